"""The vendor shell proxy's configuration (a YAML file the installer writes on the admin
host): the admin database, its keys, and one loopback port per opted-in host.

One port per host, not one port with the host chosen at login: the overlay service
``vendor-shell-<host>`` is forwarded by the admin host's tunneler to that host's port, so
the host a session reaches is fixed by the overlay service the window's scope names, and
nothing the vendor types can pick another.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from appliance.breakglass.errors import ShellError
from appliance.config_files import load_model

__all__ = ["ShellHost", "ShellProxyConfig", "load_config"]

_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ShellHost(BaseModel):
    """One opted-in host: where the proxy listens for it, and where its sshd is."""

    model_config = ConfigDict(extra="forbid")

    name: str
    listen_port: int = Field(ge=1, le=65535)
    address: str = Field(min_length=1, description="the target's management address")
    port: int = Field(22, ge=1, le=65535)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError(
                f"expected a host name (letters, digits, '.', '_', '-'), found {value!r}"
            )
        return value


class ShellProxyConfig(BaseModel):
    """Everything the proxy needs; limits in one place."""

    model_config = ConfigDict(extra="forbid")

    database_url: str
    ca_key: Path = Field(description="the site SSH CA's private key (0600, root-only folder)")
    host_key: Path = Field(description="the proxy's own SSH host key, shown to vendors")
    known_hosts: Path = Field(description="the targets' host keys (OpenSSH known_hosts)")
    recordings: Path = Field(description="where session recordings are written")
    audit_key_dir: Path = Field(
        description="the admin service's data folder: its audit key seals each recording"
    )
    listen_host: str = "127.0.0.1"
    hosts: list[ShellHost] = Field(min_length=1)
    poll_seconds: float = Field(1.0, gt=0, le=5, description="how often open windows are read")
    login_timeout_seconds: float = Field(30.0, gt=0, le=120)
    connect_timeout_seconds: float = Field(15.0, gt=0, le=120)
    max_sessions: int = Field(64, ge=1, description="vendor connections at once, all hosts")

    @field_validator("listen_host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if value not in {"127.0.0.1", "::1"}:
            raise ValueError(f"expected a loopback address (the site stays dark), found {value!r}")
        return value

    @field_validator("hosts")
    @classmethod
    def _distinct(cls, value: list[ShellHost]) -> list[ShellHost]:
        names = [h.name for h in value]
        ports = [h.listen_port for h in value]
        if len(set(names)) != len(names) or len(set(ports)) != len(ports):
            raise ValueError("each host is named once and has a port of its own")
        return value


def load_config(path: Path) -> ShellProxyConfig:
    """The configuration in ``path``, or ShellError saying what is wrong."""
    return load_model(path, ShellProxyConfig, "the vendor shell proxy's config", ShellError)
