"""The access proxy's configuration (a YAML file the installer writes on the gateway host)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from appliance.access.policy import StaticKey
from appliance.config_files import load_model
from appliance.errors import ApplianceError

__all__ = ["AccessConfig", "AccessConfigError", "load_config"]


class AccessConfigError(ApplianceError):
    """The access proxy's configuration is missing or wrong."""


class StaticKeyConfig(BaseModel):
    """A key the proxy knows without the admin service (the installer's health probe)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    models: list[str] = Field(default_factory=list)


class GatewaySlotConfig(BaseModel):
    """One of the two llm-gateway instances that take turns (ADR 0017)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]{1,8}$")
    listen: str
    config: Path

    @field_validator("listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        return _loopback_address(value)


class AccessConfig(BaseModel):
    """Where the proxy listens, what it forwards to, and where the admin service is."""

    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:8080"
    backend_listen: str = "127.0.0.1:8082"
    # Either two llm-gateway slots whose files the proxy writes (routing changes live), or
    # one llm-gateway whose file and key the installer wrote.
    gateway_slots: list[GatewaySlotConfig] = Field(default_factory=list)
    gateway_url: str = "http://127.0.0.1:8081"
    gateway_key_file: Path | None = None
    backend_url: str = "http://127.0.0.1:18000"
    admin_url: str | None = None
    admin_ca: Path | None = None
    admin_token_file: Path | None = None
    data_dir: Path = Path("/var/lib/appliance-access")
    gateway_name: str = Field("gateway", min_length=1, max_length=128)
    static_keys: list[StaticKeyConfig] = Field(default_factory=list)
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body taken")
    prompt_overhead_tokens: int = Field(
        64, ge=0, description="tokens the chat template may add to a prompt, per request"
    )
    message_overhead_tokens: int = Field(16, ge=0, description="and per message")
    policy_wait_seconds: float = Field(20.0, gt=0, le=30, description="long poll length")
    upload_seconds: float = Field(2.0, gt=0, le=300, description="usage hand-over interval")
    upstream_timeout_seconds: float = Field(
        300.0, gt=0, description="longest a model may take to start or continue an answer"
    )
    model_silence_seconds: float = Field(
        3.0, gt=0, le=300, description="silence from the model server before its path is checked"
    )
    model_check_seconds: float = Field(
        2.0, gt=0, le=60, description="longest that check may take before the request ends"
    )

    @field_validator("listen", "backend_listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        return _loopback_address(value)

    @field_validator("gateway_slots")
    @classmethod
    def _two_slots(cls, value: list[GatewaySlotConfig]) -> list[GatewaySlotConfig]:
        if value and (len(value) != 2 or value[0].name == value[1].name):
            raise ValueError("two slots of different names take turns, or none")
        return value

    def address(self, which: str) -> tuple[str, int]:
        """(host, port) of ``listen`` or ``backend_listen``."""
        host, _, port = getattr(self, which).rpartition(":")
        return host.strip("[]"), int(port)

    def static(self) -> list[StaticKey]:
        """The static keys as the policy takes them."""
        return [StaticKey(k.name, k.sha256, tuple(k.models)) for k in self.static_keys]

    def secret(self, path: Path | None, what: str) -> str | None:
        """The contents of a root-only secret file, stripped, or None when not configured."""
        if path is None:
            return None
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AccessConfigError(
                f"cannot read the {what} file {path}: {exc.strerror}",
                hint="the installer writes it; run the install again",
            ) from exc
        if not value:
            raise AccessConfigError(f"the {what} file {path} is empty")
        return value


def _loopback_address(value: str) -> str:
    host, _, port = value.rpartition(":")
    if host not in {"127.0.0.1", "localhost", "[::1]"} or not port.isdigit():
        raise ValueError(f"expected a loopback HOST:PORT (the site stays dark), found {value!r}")
    return value


def load_config(path: Path) -> AccessConfig:
    """The configuration in ``path``, or AccessConfigError saying what is wrong."""
    return load_model(path, AccessConfig, "the access proxy's config", AccessConfigError)
