"""Admin service settings: environment (APPLIANCE_ADMIN_*), then a YAML config file.

Fails fast: outside the lab and test profiles, a missing controller credential file or
a TLS key without its certificate stops the service at start with a clear message.

A site has an OpenZiti controller exactly when ``controller_password_file`` names one
(:attr:`AdminSettings.controller_installed`); only the lab and test profiles may leave it
out, for a site installed without the overlay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from appliance.breakglass.gate import GateConfig
from appliance.breakglass.policy import BreakglassPolicy, ReaperConfig
from appliance.config_files import problems_of, read_mapping
from appliance.errors import ApplianceError

__all__ = ["AdminSettings", "SettingsError", "load_settings"]


class SettingsError(ApplianceError):
    """The admin service's configuration is missing or wrong."""


class AdminSettings(BaseSettings):
    """Everything the admin service reads at start."""

    model_config = SettingsConfigDict(env_prefix="APPLIANCE_ADMIN_", extra="forbid")

    profile: Literal["production", "lab", "test"] = "production"
    data_dir: Path = Path("/var/lib/appliance-admin")
    db_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    access_log: bool = Field(
        False,
        description="a line per request in the service's log; the audit log already records "
        "every login and change, and a line each costs a fifth of a session lookup",
    )

    controller_url: str = "https://127.0.0.1:1280"
    controller_fallback_urls: list[str] = Field(
        default_factory=list,
        description="the other members of a raft cluster, asked when controller_url cannot "
        "be reached (their management API on their overlay port)",
    )
    controller_username: str = "admin"
    controller_password_file: Path | None = None
    controller_ca: Path | None = None
    controller_timeout: float = 10.0
    controller_probe_timeout: float = Field(
        2.0, gt=0, le=30, description="how long a status probe of the controller may take"
    )
    controller_status_seconds: float = Field(
        5.0, ge=0, le=300, description="how long a probe's answer is reused"
    )

    session_minutes: int = Field(30, ge=1, le=24 * 60)
    lockout_threshold: int = Field(5, ge=1)
    lockout_minutes: int = Field(15, ge=1)
    throttle_per_client: int = Field(20, ge=1, description="failures per client per window")
    throttle_window_minutes: int = Field(15, ge=1)
    enrollment_minutes_default: int = Field(24 * 60, ge=5)
    enrollment_minutes_max: int = Field(7 * 24 * 60, ge=5)

    breakglass_max_minutes: int = Field(
        240, ge=1, le=7 * 24 * 60, description="longest window an admin may request"
    )
    breakglass_enrollment_minutes: int = Field(
        10, ge=1, le=60, description="how long a vendor engineer's enrollment token lives"
    )
    breakglass_router_roles: list[str] = Field(
        default_factory=lambda: ["#vendor-access"],
        description="edge routers the vendor may connect to (role attributes or @ids)",
    )
    breakglass_confirm_seconds: float = Field(
        10.0, gt=0, le=120, description="how long to wait for the vendor's circuits to close"
    )
    breakglass_gate_interfaces: list[str] = Field(
        default_factory=list, description="vendor-facing interfaces the reaper's gate guards"
    )
    breakglass_gate_ports: list[int] = Field(
        default_factory=list, description="the vendor access router's edge listener ports"
    )
    breakglass_services: list[str] | None = Field(
        None,
        description="the overlay services a window's scope may name (the request form's "
        "choices); unset: any name, checked against the controller at activation",
    )
    reaper_interval_seconds: float = Field(0.25, gt=0, le=60)
    breakglass_recordings: Path | None = Field(
        None,
        description="the vendor shell proxy's recordings store (its config's `recordings`, "
        "root-only); unset: `recordings` in data_dir. Read for a window's evidence export "
        "and the auditors' player",
    )
    player_assets: Path = Field(
        Path("/opt/appliance/share/asciinema-player"),
        description="the folder holding the pinned asciinema-player build "
        "(`appliance components fetch-player`); the auditors' recording page serves it, "
        "and says so when it is missing",
    )
    controller_events_file: Path | None = Field(
        None,
        description="the controller's JSON event log (events: jsonLogger, type: file); the "
        "reaper records what break-glass identities did from it",
    )

    gateway_service: str | None = Field(
        None,
        description="the llm-gateway's overlay service: when set, a grant lets its subject dial "
        "the gateway (not the model's own service) and use the model through it",
    )
    gateway_models: list[str] = Field(
        default_factory=list, description="models the gateway serves (empty: any name)"
    )
    gateway_context_tokens: int = Field(
        8192,
        ge=16,
        description="the served models' context size, in tokens: the gateway's access proxy "
        "reserves up to this much for a request that does not say max_tokens",
    )
    site_timezone: str = Field(
        "UTC",
        description="the IANA timezone (Europe/Berlin) in which days, weeks and months of "
        "budgets and usage begin",
    )
    access_token_file: Path | None = Field(
        None,
        description="a root-only file holding the bearer token with which gateway hosts' "
        "access proxies fetch the access policy and hand over usage (unset: not served)",
    )
    identity_sync_seconds: float = Field(
        15.0,
        ge=0,
        le=3600,
        description="how often identity states are synced with the controller (0: never "
        "by themselves)",
    )

    checkpoint_records: int = Field(1000, ge=1, description="sign after this many records")
    checkpoint_seconds: int = Field(60, ge=1, description="or after this long")
    audit_check_minutes: int = Field(60, ge=1, description="full integrity check interval")
    audit_watch: bool = Field(True, description="check and checkpoint in the background")

    @field_validator("site_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"expected an IANA timezone name such as 'UTC' or 'Europe/Berlin', found {value!r}"
            ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AdminSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    def breakglass_policy(self) -> BreakglassPolicy:
        """The break-glass rules these settings give."""
        return BreakglassPolicy(
            max_minutes=self.breakglass_max_minutes,
            enrollment_minutes=self.breakglass_enrollment_minutes,
            router_roles=tuple(self.breakglass_router_roles),
            confirm_seconds=self.breakglass_confirm_seconds,
            services=None if self.breakglass_services is None else tuple(self.breakglass_services),
        )

    def reaper_config(self) -> ReaperConfig:
        """What the break-glass reaper works on, as these settings give it."""
        return ReaperConfig(
            database_url=self.database_url,
            interval_seconds=self.reaper_interval_seconds,
            gate=GateConfig(
                tuple(self.breakglass_gate_interfaces), tuple(self.breakglass_gate_ports)
            )
            if self.breakglass_gate_interfaces
            else None,
            events_file=self.controller_events_file,
        )

    def check_ready_to_serve(self) -> None:
        """Fail fast before serving in production without what production needs."""
        if self.profile == "production" and self.controller_password_file is None:
            raise SettingsError(
                "controller_password_file is required in production (a root-only file "
                "holding the controller admin password)",
                hint="set it in the config file or APPLIANCE_ADMIN_CONTROLLER_PASSWORD_FILE",
            )

    @property
    def controller_installed(self) -> bool:
        """Whether this site has an OpenZiti controller: the settings name its credential.

        Production always does (:meth:`check_ready_to_serve`); a lab or test site
        installed without the overlay leaves ``controller_password_file`` unset.
        """
        return self.controller_password_file is not None

    @property
    def recordings_dir(self) -> Path:
        """The vendor shell's recordings store: the setting, or ``recordings`` in data_dir."""
        return self.breakglass_recordings or self.data_dir / "recordings"

    @property
    def database_url(self) -> str:
        """The configured URL, or the SQLite file under data_dir."""
        return self.db_url or f"sqlite:///{self.data_dir / 'admin.db'}"

    @property
    def tls(self) -> bool:
        """Whether the service terminates TLS itself (then cookies are Secure)."""
        return self.tls_cert is not None

    def access_token(self) -> str | None:
        """The access proxies' bearer token from its file, or None when none is configured."""
        if self.access_token_file is None:
            return None
        try:
            token = self.access_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"cannot read the access token file {self.access_token_file}: {exc.strerror}"
            ) from exc
        if not token:
            raise SettingsError(
                f"the access token file {self.access_token_file} is empty: expected the "
                "token the installer made"
            )
        return token

    def controller_password(self) -> str | None:
        """The controller password from its file, or None when none is configured."""
        if self.controller_password_file is None:
            return None
        try:
            return self.controller_password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"cannot read the controller password file {self.controller_password_file}: "
                f"{exc.strerror}"
            ) from exc


def load_settings(config: Path | None = None, **overrides: Any) -> AdminSettings:
    """Settings from the environment, the YAML ``config`` file, then explicit overrides."""
    values: dict[str, Any] = {}
    if config is not None:
        values.update(read_mapping(config, "the config file", SettingsError))
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return AdminSettings(**values)
    except ValidationError as exc:
        problems = problems_of(exc, "settings")
        raise SettingsError(f"admin service settings: {problems}") from None
