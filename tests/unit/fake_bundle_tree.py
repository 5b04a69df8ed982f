"""A fake bundle tree for the media tests: metadata files and content-addressed targets.

Only the layout matters to the media code (ISO images, volume sets), not the signatures.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

LARGE = 3 * 2**20
METADATA = {
    "1.root.json": b'{"signed": {"_type": "root", "version": 1}}\n',
    "root.json": b'{"signed": {"_type": "root", "version": 1}}\n',
    "timestamp.json": b'{"signed": {"_type": "timestamp"}}\n',
    "snapshot.json": b'{"signed": {"_type": "snapshot"}}\n',
    "targets.json": b'{"signed": {"_type": "targets", "targets": {}}}\n',
}


def content(seed: int, size: int) -> bytes:
    """Deterministic bytes without repeats (so a misplaced read shows)."""
    return random.Random(seed).randbytes(size)


def make_bundle(root: Path, sizes: tuple[int, ...] = (3000, 5000, 7000, LARGE, 0)) -> Path:
    """A fake bundle tree: metadata/*.json and targets/sha256/<sha256 of content>."""
    (root / "metadata").mkdir(parents=True)
    (root / "targets/sha256").mkdir(parents=True)
    for name, data in METADATA.items():
        (root / "metadata" / name).write_bytes(data)
    for seed, size in enumerate(sizes):
        data = content(seed, size)
        (root / "targets/sha256" / hashlib.sha256(data).hexdigest()).write_bytes(data)
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
