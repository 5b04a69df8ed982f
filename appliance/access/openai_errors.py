"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Every refusal and failure the access proxy answers itself goes through here, so a client
library reads each one the way it reads OpenAI's own (and never gets HTML or a traceback).
"""

from __future__ import annotations

import orjson

__all__ = ["error_body"]


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    """The JSON body of an error answer."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})
