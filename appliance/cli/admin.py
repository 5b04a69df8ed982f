"""``appliance admin``: run and prepare the admin service."""

from __future__ import annotations

import gc
import ssl
import sys
from pathlib import Path

import typer
from rich.console import Console

from appliance.db.roles import Role

# The service's modules (settings, SQLAlchemy, Alembic) are imported by the commands that
# use them: every `appliance` command starts without them (`appliance audit verify` on an
# auditor's laptop, say).

__all__ = ["app"]

app = typer.Typer(help="Run and prepare the admin service.", no_args_is_help=True)
_console = Console(highlight=False, soft_wrap=True)

#: TLS 1.2 suites allowed besides TLS 1.3's (all approved): ECDHE with AES-GCM only.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
)

_DB = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite under the data dir).")
_CONFIG = typer.Option(None, "--config", help="YAML settings file.")


@app.command("migrate")
def migrate(db: str | None = _DB, config: Path | None = _CONFIG) -> None:
    """Bring the database to the newest schema (Alembic upgrade to head)."""
    from appliance.admin.settings import load_settings
    from appliance.db.engine import make_engine
    from appliance.db.migrate import current_revision, upgrade

    settings = load_settings(config, db_url=db)
    engine = make_engine(settings.database_url)
    before = current_revision(engine)
    revision = upgrade(engine)
    if before == revision:
        _console.print(f"database already at revision {revision}")
    else:
        _console.print(f"database upgraded from {before or 'empty'} to revision {revision}")


@app.command("tls-cert")
def tls_cert(
    out: Path = typer.Option(..., "--out", help="Folder for cert.pem and key.pem."),
    name: str = typer.Option(..., "--name", help="The host's name, put in the certificate."),
) -> None:
    """Make this host's own TLS certificate (P-384) unless the folder already holds one."""
    from appliance.crypto.tls import write_self_signed

    if write_self_signed(out, name):
        _console.print(f"wrote {out}/cert.pem and key.pem (0600) for {name}")
    else:
        _console.print(f"{out} already holds cert.pem and key.pem: kept")


@app.command("sign-controller-ca")
def sign_controller_ca(
    ca_cert: Path = typer.Option(..., "--ca-cert", help="The site's root CA certificate."),
    ca_key: Path = typer.Option(..., "--ca-key", help="The site's root CA key."),
    name: str = typer.Option(..., "--name", help="The common name the request must carry."),
    trust_domain: str = typer.Option(..., "--trust-domain", help="SPIFFE trust domain."),
    max_path_len: int = typer.Option(1, "--max-path-len", help="CAs allowed below it."),
) -> None:
    """Sign a cluster member's signing-CA request (read from stdin) under the root CA;
    print the certificate (PEM). The member's key never comes here (ADR 0015)."""
    from appliance.crypto.member_ca import CertificateRequestError, MemberCA, sign_member_ca

    try:
        root = ca_cert.read_bytes(), ca_key.read_bytes()
    except OSError as exc:
        raise CertificateRequestError(
            f"cannot read the root CA: {exc}",
            hint="the root CA key may have been moved offline (docs/install.md): put "
            "root-ca/keys/root-ca.key back on the first controller host for this install",
        ) from exc
    member = MemberCA(name, trust_domain, max_path_len=max_path_len)
    cert = sign_member_ca(sys.stdin.buffer.read(), *root, member)
    sys.stdout.write(cert.decode("ascii"))


@app.command("create-user")
def create_user_command(
    name: str = typer.Argument(..., help="User name."),
    role: Role = typer.Option(..., "--role", help="admin or auditor."),
    db: str | None = _DB,
    config: Path | None = _CONFIG,
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
    one_time: bool = typer.Option(
        False,
        "--one-time",
        help="The password read from stdin is a one-time password: it must be changed at "
        "first login before anything else (a generated one always is).",
    ),
) -> None:
    """Create an account; prints a one-time password unless one is read from stdin."""
    from appliance.admin.services.accounts import create_user
    from appliance.admin.settings import load_settings
    from appliance.db.engine import open_session

    settings = load_settings(config, db_url=db)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    with open_session(settings.database_url) as session:
        _, generated = create_user(
            session, name, role, password=password, actor="cli", one_time=one_time or None
        )
        session.commit()
    forced = " (the password must be changed at first login)" if one_time else ""
    _console.print(f"created {role.value} {name}{forced}")
    if generated:
        _console.print(f"one-time password (change it at first login): {generated}")


@app.command("serve")
def serve(
    db: str | None = _DB,
    host: str | None = typer.Option(None, "--host", help="Address (default: 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: 8443)."),
    config: Path | None = _CONFIG,
) -> None:
    """Serve the admin service with uvicorn (loopback unless told otherwise)."""
    import uvicorn

    from appliance.admin.app import create_app
    from appliance.admin.settings import load_settings

    settings = load_settings(config, db_url=db, host=host, port=port)
    settings.check_ready_to_serve()
    _require_migrated(settings.database_url)
    application = create_app(settings)
    kwargs: dict[str, object] = {}
    if settings.tls_cert is not None:
        kwargs = {
            "ssl_certfile": str(settings.tls_cert),
            "ssl_keyfile": str(settings.tls_key),
            "ssl_version": ssl.PROTOCOL_TLS_SERVER,
            "ssl_ciphers": TLS12_CIPHERS,
        }
    _console.print(
        f"admin service on {'https' if settings.tls else 'http'}://{settings.host}:{settings.port}/"
    )
    # Everything loaded so far lives as long as the process: leave it out of the
    # collector's full passes, which otherwise stall a request now and then.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
        **kwargs,  # type: ignore[arg-type]
    )


@app.command("reaper")
def reaper(
    db: str | None = _DB,
    config: Path | None = _CONFIG,
    once: bool = typer.Option(False, "--once", help="One pass, then exit."),
) -> None:
    """End break-glass windows on time and keep the vendor gate in step (its own process)."""
    import logging

    from appliance.admin.controller import make_controller
    from appliance.admin.settings import load_settings
    from appliance.breakglass.clock import read_boot_clock
    from appliance.breakglass.reaper import ControllerOnDemand, Reaper
    from appliance.breakglass.service import Breakglass

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings(config, db_url=db)
    _require_migrated(settings.database_url)
    breakglass = Breakglass(
        settings.breakglass_policy(),
        controller=ControllerOnDemand(lambda: make_controller(settings)),
        clock=read_boot_clock,
    )
    Reaper(breakglass, settings.reaper_config()).run(once=once)


def _require_migrated(url: str) -> None:
    from appliance.db.engine import DatabaseError, make_engine
    from appliance.db.migrate import current_revision, head_revision

    found = current_revision(make_engine(url))
    if found != head_revision():
        raise DatabaseError(
            f"the database is at revision {found or 'none (never migrated)'}; this version "
            f"needs {head_revision()}",
            hint="run `appliance admin migrate` with the same --db/--config first",
        )
