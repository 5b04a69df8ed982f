"""Issue 15: a large export is formatted by worker processes, each reading its own range
of records; the archive holds the same bytes as a one-process export, on SQLite and on
PostgreSQL, and verifies offline."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Text, select, type_coerce
from sqlalchemy.orm import Session

from appliance.audit import export as export_module
from appliance.audit.checkpoint import load_or_create_key
from appliance.audit.export import export_log
from appliance.audit.format import timestamp
from appliance.audit.record import record_event
from appliance.audit.verify import verify_export
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Identity, IdentityKind
from tests.integration.audit_logs import EARLY, LATE
from tests.integration.databases import postgres_cluster


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A log of 60 records."""
    if request.param == "sqlite":
        address = f"sqlite:///{tmp_path_factory.mktemp('log') / 'admin.db'}"
        yield _filled(address)
    else:
        with postgres_cluster() as address:
            yield _filled(address)


@pytest.fixture(scope="module")
def key_dir(url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("key")


def _filled(url: str) -> str:
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        for i in range(60):
            record_event(
                session,
                actor="alice",
                action=("identity.create", "auth.login", "breakglass.open")[i % 3],
                target=f"t{i % 4}",
                details={"n": i, "note": 'ünïcode, "quoted"\nand a new line'},
            )
        session.commit()
    return url


def _records(archive: Path, fmt: str) -> list[bytes]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(f"records.{fmt}")
        assert member is not None
        return member.read().splitlines()


def _export(
    url: str, key_dir: Path, out: Path, fmt: str, workers: int, **filters: list[str]
) -> Path:
    with Session(make_engine(url)) as session:
        export_log(
            session,
            load_or_create_key(key_dir),  # the log's one signing key
            since=EARLY,
            until=LATE,
            fmt=fmt,  # type: ignore[arg-type]
            out=out,
            actor="auditor1",
            workers=workers,
            types=filters.get("types"),
            targets=filters.get("targets"),
        )
    return out


@pytest.mark.parametrize(
    ("fmt", "filters"),
    [
        ("jsonl", {}),
        ("csv", {}),
        ("jsonl", {"types": ["breakglass"], "targets": ["t1", "t2"]}),
        ("csv", {"types": ["auth"]}),
    ],
    ids=["jsonl", "csv", "jsonl-filtered", "csv-filtered"],
)
def test_workers_write_the_bytes_one_process_writes(
    url: str,
    key_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    filters: dict[str, list[str]],
) -> None:
    monkeypatch.setattr(export_module, "CHUNK_RECORDS", 7)  # many chunks, one cut mid-way
    parallel = _export(url, key_dir, tmp_path / "parallel.tar", fmt, workers=2, **filters)
    assert verify_export(parallel).records >= 60
    # The one-process export made afterwards also holds the first export's own record.
    alone = _records(_export(url, key_dir, tmp_path / "alone.tar", fmt, workers=1, **filters), fmt)
    assert _records(parallel, fmt) == alone[:-1]
    assert verify_export(tmp_path / "alone.tar").records == len(alone) - (fmt == "csv")


@pytest.mark.parametrize("microsecond", [0, 5, 999_999])
def test_a_stored_time_is_exported_as_its_canonical_text(url: str, microsecond: int) -> None:
    """The export rewrites SQLite's stored text instead of parsing it: the same text as
    formatting the time read back, whatever its microseconds, on both databases."""
    moment = datetime(2026, 11, 29, 1, 2, 3, microsecond, tzinfo=UTC)
    engine = make_engine(url)
    with engine.connect() as connection, Session(bind=connection) as session:
        session.add(
            Identity(
                name=f"t-{microsecond}",
                kind=IdentityKind.user,
                ziti_id=f"z{microsecond}",
                role_attributes=[],
                created_by="t",
                created_at=moment,
            )
        )
        session.flush()
        raw = connection.execute(
            select(type_coerce(Identity.created_at, Text)).where(
                Identity.name == f"t-{microsecond}"
            )
        ).scalar()
        session.rollback()
    assert export_module._timestamp(raw) == timestamp(moment)
