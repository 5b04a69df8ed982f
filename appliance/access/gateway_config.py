"""llm-gateway's configuration file, written by the access proxy (ADR 0017).

llm-gateway reads its configuration once, at start. Its routing comes from the admin
service inside the access policy, so the access proxy writes the file itself: the loopback
listener, the backend (the proxy's own back listener), one key made for this file only,
and the routing rendered into llm-gateway's keys. The key tells the proxy that an instance
runs this very file: an instance still on an older file refuses it. No I/O but the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from appliance._fsutil import fsync_dir

__all__ = [
    "GatewayFile",
    "read_gateway_file",
    "render_gateway_config",
    "routing_digest",
    "write_gateway_file",
]

_DIGEST_MARK = "# appliance routing: "


def routing_digest(routing: Mapping[str, Any] | None) -> str:
    """What identifies a routing: SHA-256 of its canonical JSON ("none" when off)."""
    if routing is None:
        return "none"
    canonical = json.dumps(routing, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def render_gateway_config(
    *, listen: str, backend_url: str, key: str, routing: Mapping[str, Any] | None
) -> str:
    """The file's text: ``listen`` on loopback, every model through ``backend_url``."""
    document: dict[str, Any] = {
        "listen": listen,
        # Model names are sent to the "local" provider unless they start like an outside
        # provider's (gpt-, claude-...), which the admin service refuses in routes.
        "providers": {"local": {"base_url": backend_url}},
        "api_keys": {
            "enabled": True,
            "keys": [{"name": "appliance-access", "key": key, "allowed_models": []}],
        },
    }
    if routing is not None:
        document["routing"] = _routing(routing)
        if routing.get("semantic"):
            # Embeddings in OpenAI's shape, from the back listener like every model call;
            # llm-gateway takes an "openai" embedding provider only with a key.
            document["providers"]["open_ai"] = {"base_url": backend_url, "api_key": key}
    header = (
        "# Written by the access proxy (ADR 0017): replaced whole when the routing changes.\n"
        f"{_DIGEST_MARK}{routing_digest(routing)}\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _routing(routing: Mapping[str, Any]) -> dict[str, Any]:
    routes = list(routing["routes"])
    rules = [
        {
            "match": {
                "keywords": list(route["keywords"]),
                **({"exclude": list(route["exclude"])} if route.get("exclude") else {}),
            },
            "route": route["name"],
        }
        for route in routes
        if route.get("keywords")
    ]
    semantic = routing.get("semantic")
    rendered: dict[str, Any] = {
        "allow_explicit_model": bool(routing.get("allow_explicit_model", False)),
        # Always named: left empty, llm-gateway would fall back to the first route.
        "default_route": routing["default_route"],
        "heuristics": {"enabled": bool(rules), "rules": rules},
        "semantic": (
            {
                "enabled": True,
                "provider": "openai",
                "model": semantic["model"],
                "threshold": float(semantic["threshold"]),
            }
            if semantic
            else {"enabled": False}
        ),
        "routes": [
            {
                "name": route["name"],
                "model": route["model"],
                "description": route.get("description", ""),
                "examples": list(route.get("examples") or []),
            }
            for route in routes
        ],
    }
    return rendered


@dataclass(frozen=True)
class GatewayFile:
    """What a file this module wrote holds: its key and its routing's digest."""

    key: str
    digest: str


def read_gateway_file(path: Path) -> GatewayFile | None:
    """The key and routing digest of a file written here, or None (absent, or not ours)."""
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
        key = document["api_keys"]["keys"][0]["key"]
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return None
    mark = next((line for line in text.splitlines() if line.startswith(_DIGEST_MARK)), None)
    if mark is None or not isinstance(key, str):
        return None
    return GatewayFile(key, mark[len(_DIGEST_MARK) :].strip())


def write_gateway_file(path: Path, text: str) -> None:
    """Replace ``path`` whole (root only): written in a folder beside its own, synced,
    renamed into place. llm-gateway never starts from half a file, and the systemd path
    unit watching ``path`` sees one change, the rename, so the instance restarts once."""
    staging = path.parent.parent / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    part = staging / f"{path.parent.name}-{path.name}"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, path)
    fsync_dir(path.parent)
