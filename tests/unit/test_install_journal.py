"""The install journal: durable steps, resume, and refusal of a file it did not write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import InstallError
from appliance.install.journal import STEPS, load_journal, new_journal


def _new(path: Path):  # type: ignore[no-untyped-def]
    return new_journal(path, bundle="lab", version="1.0", targets_sha256="ab" * 32, kind="install")


def test_steps_survive_a_reload_and_a_kill_leaves_one_running(tmp_path: Path) -> None:
    journal = _new(tmp_path / "journal.json")
    journal.done("verify", root_fingerprint="sha256:x")
    journal.begin("import")  # killed here
    again = load_journal(tmp_path / "journal.json")
    assert again is not None
    assert [s.state for s in again.steps] == ["done", "running"] + ["pending"] * (
        len(STEPS["install"]) - 2
    )
    assert again.step("verify").detail == {"root_fingerprint": "sha256:x"}
    assert again.finished is None


def test_finishing_every_step_marks_the_journal_finished(tmp_path: Path) -> None:
    journal = _new(tmp_path / "journal.json")
    for name in STEPS["install"]:
        journal.begin(name)
        journal.done(name)
    loaded = load_journal(tmp_path / "journal.json")
    assert loaded is not None and loaded.finished is not None


@pytest.mark.parametrize("kind", ["upgrade", "rollback"])
def test_each_kind_keeps_its_own_steps(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "journal.json"
    new_journal(path, bundle="lab", version="1.0", targets_sha256="ab" * 32, kind=kind)  # type: ignore[arg-type]
    loaded = load_journal(path)
    assert loaded is not None and loaded.kind == kind
    assert [s.name for s in loaded.steps] == list(STEPS[kind])
    assert ("snapshot" in STEPS[kind]) == (kind == "upgrade")


def test_no_journal_is_none(tmp_path: Path) -> None:
    assert load_journal(tmp_path / "journal.json") is None


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"format": 99}),
        json.dumps(
            {
                "format": 1,
                "bundle": "lab",
                "version": "1",
                "targets_sha256": "x",
                "kind": "install",
                "started": "t",
                "finished": None,
                "steps": [{"name": "verify", "state": "done", "at": None, "detail": {}}],
            }
        ),
    ],
)
def test_a_journal_it_did_not_write_is_refused_with_what_to_do(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "journal.json"
    path.write_text(content)
    with pytest.raises(InstallError) as raised:
        load_journal(path)
    assert str(path) in str(raised.value)
    assert raised.value.hint and "move it aside" in raised.value.hint
    assert path.read_text() == content  # left as it was, for a person to look at
