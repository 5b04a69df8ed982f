"""Issue 15: the verifier checks hashes on several processes, chunk by chunk, and still
names the first bad record exactly as a one-process check does, wherever the chunks cut."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.audit import records_chain
from appliance.audit.checkpoint import AuditIntegrityError
from appliance.audit.verify import verify_export
from tests.integration.audit_logs import export, joined, lines, new_log, rewrite

TAMPERS = {
    "field edited": lambda rows: [{**r, "actor": "mallory"} if r["seq"] == 27 else r for r in rows],
    "record deleted": lambda rows: [r for r in rows if r["seq"] != 30],
    "records reordered": lambda rows: [*rows[:20], rows[21], rows[20], *rows[22:]],
    "tail truncated": lambda rows: rows[:33],
    "hash edited": lambda rows: [{**r, "hash": "0" * 64} if r["seq"] == 12 else r for r in rows],
    "field removed": lambda rows: [
        {k: v for k, v in r.items() if k != "target"} if r["seq"] == 18 else r for r in rows
    ],
}


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("log")
    return root, new_log(root, records=40)


def verdict(archive: Path, workers: int) -> str:
    try:
        summary = verify_export(archive, workers=workers)
    except AuditIntegrityError as exc:
        return str(exc)
    return f"ok {summary.records}"


@pytest.mark.parametrize("chunk", [150, 400, 1000, 1 << 20])
@pytest.mark.parametrize("tamper", list(TAMPERS), ids=list(TAMPERS))
def test_parallel_verdict_is_the_one_process_verdict(
    log: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: str, chunk: int
) -> None:
    root, url = log
    archive = export(root, url, f"{tamper}-{chunk}.tar".replace(" ", "-"))
    rewrite(archive, "records.jsonl", lambda data: joined(TAMPERS[tamper](lines(data))))
    one = verdict(archive, workers=1)  # a single chunk, checked in this process
    monkeypatch.setattr(records_chain, "CHUNK_BYTES", chunk)
    assert verdict(archive, workers=2) == one
    assert not one.startswith("ok")


def test_an_untouched_export_verifies_in_chunks(
    log: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url = log
    archive = export(root, url, "clean.tar")
    monkeypatch.setattr(records_chain, "CHUNK_BYTES", 128)
    summary = verify_export(archive, workers=3)
    assert (summary.first, summary.last, summary.records) == (1, summary.last, summary.last)
    assert summary.records >= 40


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("field edited", "record 27 (auth.login by mallory) was altered"),
        ("record deleted", "record 30 is missing (deleted): record 31 comes after record 29"),
        ("records reordered", "record 21 is out of order (reordered): record 22 comes before it"),
        ("hash edited", "record 12 (identity.create by alice) was altered"),
    ],
)
def test_the_first_bad_record_is_named_across_chunks(
    log: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, tamper: str, message: str
) -> None:
    root, url = log
    archive = export(root, url, f"named-{tamper}.tar".replace(" ", "-"))
    rewrite(archive, "records.jsonl", lambda data: joined(TAMPERS[tamper](lines(data))))
    monkeypatch.setattr(records_chain, "CHUNK_BYTES", 150)
    with pytest.raises(AuditIntegrityError, match=re.escape(message)):
        verify_export(archive, workers=2)
