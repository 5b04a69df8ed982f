"""The ``appliance`` command line: a thin layer that parses options and calls the library."""

from appliance.cli.main import app, main

__all__ = ["app", "main"]
