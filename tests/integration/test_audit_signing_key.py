"""Issue 14, item 2: reading, checking and exporting the log never make a signing key.

Pointed at a data directory without the service's key, `appliance audit export` and
`appliance audit check` refuse in one line naming the directory and how to point them at
the service's; with another directory's key they say that key did not sign the log (not
that the log was tampered with), and nothing is written. Real SQLite, the real CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.audit.check import check_log
from appliance.audit.checkpoint import AuditIntegrityError, make_checkpoint
from appliance.audit.record import record_event
from appliance.audit.signing_key import (
    KEY_FILE,
    AuditKeyMismatchError,
    key_id,
    load_key,
    load_or_create_key,
)
from appliance.audit.verify import verify_export
from appliance.db.engine import make_engine
from appliance.db.models import AuditCheckpoint, AuditEvent, utcnow
from tests.integration.audit_logs import audit_cli, export, new_log

EXPORT = ("export", "--since", "2000-01-01", "--until", "2100-01-01")


@pytest.fixture
def service(tmp_path: Path) -> tuple[Path, str]:
    """The service's data directory (its key, a log of 10 records with a checkpoint)."""
    home = tmp_path / "service"
    home.mkdir()
    url = new_log(home)
    export(home, url)  # signs a checkpoint with the service's key
    return home, url


def log_size(url: str) -> tuple[int, int]:
    with Session(make_engine(url)) as session:
        records = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        checkpoints = session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0
    return records, checkpoints


def assert_one_line_naming(stderr: str, directory: Path) -> None:
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert f"no audit signing key in {directory}" in stderr
    assert "--config FILE" in stderr and "--data-dir DIR" in stderr
    assert "Traceback" not in stderr


def test_audit_export_never_mints_a_key(service: tuple[Path, str], tmp_path: Path) -> None:
    _, url = service
    elsewhere = tmp_path / "elsewhere"  # e.g. the default data directory on this machine
    elsewhere.mkdir()
    before = log_size(url)
    out = tmp_path / "out.tar"
    result = audit_cli(*EXPORT, "--out", str(out), "--db", url, data_dir=elsewhere)
    assert result.returncode == 1
    assert_one_line_naming(result.stderr, elsewhere)
    assert not (elsewhere / KEY_FILE).exists()
    assert list(elsewhere.iterdir()) == []
    assert not out.exists()
    assert log_size(url) == before  # no checkpoint signed, no export recorded


def test_audit_check_never_mints_a_key(service: tuple[Path, str], tmp_path: Path) -> None:
    _, url = service
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = audit_cli("check", "--db", url, data_dir=elsewhere)
    assert result.returncode == 1
    assert_one_line_naming(result.stderr, elsewhere)
    assert not (elsewhere / KEY_FILE).exists()


def test_audit_tools_say_wrong_key_not_tampering(service: tuple[Path, str], tmp_path: Path) -> None:
    home, url = service
    other = tmp_path / "other"
    load_or_create_key(other)  # another directory that does hold a key
    before = log_size(url)
    for args in (("check",), (*EXPORT, "--out", str(tmp_path / "out.tar"))):
        result = audit_cli(*args, "--db", url, data_dir=other)
        assert result.returncode == 1, result.stdout
        stderr = result.stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert f"the audit signing key {other / KEY_FILE}: key " in stderr
        assert "did not sign this log: its checkpoint is signed by key" in stderr
        assert "--config FILE" in stderr and "--data-dir DIR" in stderr
        assert "altered" not in stderr and "replaced" not in stderr
    assert not (tmp_path / "out.tar").exists()
    assert log_size(url) == before
    with Session(make_engine(url)) as session:  # the service's own key still checks it
        assert check_log(session, load_key(home).public_key()).records == 11


def test_a_foreign_checkpoint_beside_the_services_is_still_tampering(
    service: tuple[Path, str], tmp_path: Path
) -> None:
    home, url = service
    forger = load_or_create_key(tmp_path / "forger")
    with Session(make_engine(url)) as session:
        record_event(session, actor="mallory", action="auth.login")
        session.commit()
        with pytest.raises(AuditKeyMismatchError):  # the library signs nothing with it
            make_checkpoint(session, forger)
        session.rollback()
        session.add(  # so the forger adds a checkpoint by hand, beside the service's
            AuditCheckpoint(
                tree_size=12,
                root_hash="00" * 32,
                created_at=utcnow(),
                key_id=key_id(forger),
                signature="00",
            )
        )
        session.commit()
        with pytest.raises(AuditIntegrityError, match="checkpoint of 12 records: signed by key"):
            check_log(session, load_key(home).public_key())


def test_audit_tools_use_the_service_key_from_its_config_or_data_dir(
    service: tuple[Path, str], tmp_path: Path
) -> None:
    home, url = service
    config = tmp_path / "admin.yaml"
    config.write_text(f"data_dir: {home}\ndb_url: {url}\n")
    checked = audit_cli("check", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("OK: 11 records and 1 checkpoint verify")
    out = tmp_path / "out.tar"
    made = audit_cli(*EXPORT, "--out", str(out), "--db", url, "--data-dir", str(home))
    assert made.returncode == 0, made.stderr
    assert verify_export(out).records >= 11


def test_the_explicit_command_makes_a_key_once(tmp_path: Path) -> None:
    first = audit_cli("init-key", "--data-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"made audit signing key {tmp_path / KEY_FILE}")
    pem = (tmp_path / KEY_FILE).read_bytes()
    again = audit_cli("init-key", "--data-dir", str(tmp_path))
    assert again.stdout.startswith("kept the existing audit signing key")
    assert (tmp_path / KEY_FILE).read_bytes() == pem
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_the_service_makes_its_key_once_and_not_over_a_signed_log(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from appliance.admin.app import create_app
    from appliance.admin.settings import AdminSettings

    url = new_log(tmp_path)
    settings = AdminSettings(profile="test", db_url=url, data_dir=tmp_path)
    with TestClient(create_app(settings)):
        pem = (tmp_path / KEY_FILE).read_bytes()
    with Session(make_engine(url)) as session:
        make_checkpoint(session, load_key(tmp_path))
        session.commit()
    with TestClient(create_app(settings)):
        assert (tmp_path / KEY_FILE).read_bytes() == pem  # kept, not replaced
    (tmp_path / KEY_FILE).unlink()  # the key is lost; the log holds a checkpoint it signed
    with TestClient(create_app(settings)) as client:
        assert not (tmp_path / KEY_FILE).exists()  # no new key over a signed log
        status = client.app.state.audit_watch.status  # type: ignore[attr-defined]
        assert status.ok is False and f"no audit signing key in {tmp_path}" in status.message
    with Session(make_engine(url)) as session, pytest.raises(AuditKeyMismatchError):
        check_log(session, load_or_create_key(tmp_path / "new").public_key())
