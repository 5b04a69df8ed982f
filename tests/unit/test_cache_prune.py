"""Issue 16: `appliance cache prune` removes what no current work uses, keeps the rest,
refuses while work runs, and lists first with --dry-run. Podman is faked here (the
integration tier checks a real build's record)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from appliance import prune
from appliance.cache import ledger
from appliance.errors import CommandError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("APPLIANCE_CACHE", str(root))
    monkeypatch.setattr(prune, "_current_lab_rootfs", set)
    for entry in (
        "wheelhouse/new",
        "wheelhouse/old",
        "models/m1",
        "go/bin/g1",
        "lab/rootfs/r1",
        "venv/stale",
        "wheelhouse/.old.abc.tmp",
    ):
        (root / entry).mkdir(parents=True)
        (root / entry / "data").write_bytes(b"x" * 10_000)
    (root / "rootfs").mkdir()
    (root / "rootfs/base1.tar").write_bytes(b"x" * 5000)
    (root / "demo").mkdir()  # never looked at
    (root / "demo/keep").write_text("kept")
    return root


def _build(
    cache: Path, owner: Path, part: str, *entries: str, images: tuple[str, ...] = ()
) -> None:
    owner.mkdir(parents=True, exist_ok=True)
    with ledger.using(owner, part):
        for entry in entries:
            ledger.note(cache / entry)
        for tag in images:
            ledger.note_image(tag)


class Images:
    def __init__(self, *tags: str) -> None:
        self.tags = list(tags)
        self.removed: list[str] = []

    def remove(self, tag: str) -> None:
        if tag.endswith(":busy"):
            raise CommandError(["podman", "rmi", tag], 2, "Error: image is in use by a container")
        self.removed.append(tag)

    def apply(self, say: list[str], *, dry_run: bool) -> prune.PrunePlan:
        return prune.apply(
            say.append,
            dry_run=dry_run,
            images=lambda: self.tags,
            image_size=lambda _tag: 1000,
            remove_image=self.remove,
        )


def test_prune_keeps_what_current_work_used_and_removes_the_rest(
    cache: Path, tmp_path: Path
) -> None:
    _build(
        cache,
        tmp_path / "build/lab",
        "vllm",
        "wheelhouse/new",
        "rootfs/base1.tar",
        images=("localhost/appliance/vllm:1", "localhost/appliance/base:1"),
    )
    _build(cache, tmp_path / "build/lab", "model", "models/m1")
    _build(cache, tmp_path / "gone", "hello", "go/bin/g1")
    (tmp_path / "gone").rmdir()  # its output folder is gone: the record no longer counts
    _build(cache, tmp_path / "build/lab", "nothing")  # used nothing: no record written
    assert len(list((cache / "uses").glob("*.json"))) == 3
    images = Images(
        "localhost/appliance/vllm:1",
        "localhost/appliance/base:1",
        "localhost/appliance/old:1",
        "localhost/appliance/stuck:busy",
    )
    said: list[str] = []
    done = images.apply(said, dry_run=False)

    assert sorted(p.what for p in done.remove) == [
        "go/bin/g1",
        "image localhost/appliance/old:1",
        "image localhost/appliance/stuck:busy",
        "lab/rootfs/r1",
        "venv/stale",
        "wheelhouse/.old.abc.tmp (left by a killed build)",
        "wheelhouse/old",
    ]
    assert {p.name for p in (cache / "wheelhouse").iterdir()} == {"new"}
    assert (cache / "models/m1").is_dir() and (cache / "rootfs/base1.tar").is_file()
    assert not (cache / "go/bin/g1").exists() and not (cache / "venv/stale").exists()
    assert (cache / "demo/keep").read_text() == "kept"
    assert images.removed == ["localhost/appliance/old:1"]
    assert (
        "kept image localhost/appliance/stuck:busy: Error: image is in use by a container" in said
    )
    assert done.freed >= 5 * 10_000  # five folders of 10,000 bytes each, at least
    assert "forgot 1 use records of builds and labs that are gone" in said
    assert len(list((cache / "uses").glob("*.json"))) == 2


def test_dry_run_lists_and_removes_nothing(cache: Path) -> None:
    images = Images("localhost/appliance/old:1")
    said: list[str] = []
    planned = images.apply(said, dry_run=True)
    assert len(planned.remove) == 9  # seven folders, a root filesystem and an image
    assert all(line.startswith("would remove ") for line in said)
    assert (cache / "wheelhouse/old").is_dir() and images.removed == []


def test_prune_is_refused_while_work_uses_the_cache(cache: Path) -> None:
    started, finish = threading.Event(), threading.Event()

    def work() -> None:
        with ledger.use_lock(exclusive=False):
            started.set()
            finish.wait(10)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        started.wait(10)
        with pytest.raises(prune.CacheBusyError, match="using .*cache now"):
            Images().apply([], dry_run=False)
    finally:
        finish.set()
        worker.join()
    assert (cache / "wheelhouse/old").is_dir()


def test_an_unreadable_record_stops_prune_before_anything_goes(cache: Path) -> None:
    (cache / "uses").mkdir()
    (cache / "uses/0123.json").write_text("{not json")
    with pytest.raises(ledger.CacheLedgerError, match=r"uses/0123.json cannot be read"):
        Images().apply([], dry_run=False)
    assert (cache / "wheelhouse/old").is_dir()


def test_the_virtualenv_key_is_the_one_setup_uses() -> None:
    printed = subprocess.run(
        [str(REPO / "scripts/setup.sh"), "--print-venv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(printed).name == prune.venv_key(REPO / "pyproject.toml")
