"""The OpenZiti Edge Management API for the installer's modules (standard library only).

Shared by ``library/ziti_entity.py`` (make an object match) and ``library/ziti_status.py``
(the health checks); both run on a controller host against the API on its loopback.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

_API = "/edge/management/v1"


class Controller:
    """The management API with a password session."""

    def __init__(self, base: str, ca: str, username: str, password: str) -> None:
        self._base = base.rstrip("/") + _API
        self._context = ssl.create_default_context(cafile=ca)
        self._token = ""
        body = {"username": username, "password": password}
        answer = self.call("POST", "/authenticate?method=password", body)
        self._token = answer["data"]["token"]

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        # The base is the configured https URL of the management API, never a user's.
        request = urllib.request.Request(self._base + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("zt-session", self._token)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self._context) as response:  # noqa: S310
                text = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise RuntimeError(f"{method} {path}: HTTP {error.code}: {detail}") from None
        return json.loads(text) if text else {}

    def find(self, collection: str, name: str) -> dict[str, Any] | None:
        query = urllib.parse.quote(f'name="{name}"')
        found = self.call("GET", f"/{collection}?filter={query}")["data"]
        return found[0] if found else None

    @classmethod
    def login(cls, base: str, ca: str, username: str, password_file: str) -> Controller:
        """A session for ``username`` with the password kept in ``password_file``."""
        password = Path(password_file).read_text(encoding="utf-8").strip()
        return cls(base, ca, username, password)

    def all(self, collection: str) -> list[dict[str, Any]]:
        """Every object of a collection (one page of up to 500: the overlay's own are few)."""
        return list(self.call("GET", f"/{collection}?limit=500")["data"])
