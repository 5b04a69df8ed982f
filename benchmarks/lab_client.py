"""The enrolled client the lab benchmarks send through, as `make demo` or `appliance lab
client` leave it: its arguments, and the check that it and the ziti program are there."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from appliance.settings import cache_dir, supplied_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--lab, --client and --name."""
    parser.add_argument("--lab", default=None, help="the lab (default: the demo's)")
    parser.add_argument("--client", type=Path, default=cache_dir() / "demo" / "client")
    parser.add_argument("--name", default="demo-client")


def enrolled(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The client's identity file, key file and the ziti program; exits saying what is
    missing (or that the lab needs root)."""
    if os.geteuid() != 0:
        sys.exit("the lab needs root")
    identity, key_file = args.client / f"{args.name}.json", args.client / f"{args.name}.key"
    ziti = supplied_dir() / "ziti"
    if not (identity.exists() and key_file.exists() and ziti.exists()):
        sys.exit(
            f"no enrolled client {args.name} in {args.client} or no ziti in {supplied_dir()}: "
            "run make demo with supplied OpenZiti programs first"
        )
    return identity, key_file, ziti
