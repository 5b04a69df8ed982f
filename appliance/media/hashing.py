"""Streaming every byte of content against the length and sha256 its metadata gives.

Shared by the verifier (files on the media) and the delta check (files in the site's
store): both hash on a thread pool, since hashlib releases the GIL on large updates.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from tuf.api.metadata import TargetFile

from appliance.errors import DigestMismatchError, MediaError, SizeMismatchError

__all__ = ["hash_all"]

_BLOCK = 1 << 20


def hash_all(
    open_file: Callable[[str], BinaryIO],
    files: dict[str, TargetFile],
    *,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    named: Callable[[str], str] = str,
) -> int:
    """Hash every file (opened by its key) against its target; return the bytes hashed.

    Raises on the first file whose length or digest differs; ``named`` turns a key into
    the name messages give (the media path, or the store file).
    """
    ordered = sorted(files.items(), key=lambda item: -item[1].length)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        totals = list(
            pool.map(
                lambda item: _hash_one(open_file, named(item[0]), item[0], item[1], on_progress),
                ordered,
            )
        )
    return sum(totals)


def _hash_one(
    open_file: Callable[[str], BinaryIO],
    name: str,
    key: str,
    target: TargetFile,
    on_progress: Callable[[int], None] | None,
) -> int:
    expected = (target.hashes or {})["sha256"]
    digest = hashlib.sha256()
    remaining = target.length
    try:
        with open_file(key) as handle:
            while remaining > 0:
                chunk = handle.read(min(_BLOCK, remaining))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
                if on_progress is not None:
                    on_progress(len(chunk))
            extra = handle.read(1)
    except OSError as exc:
        raise MediaError(f"reading {name} ({target.path}) failed: {exc}") from exc
    if remaining > 0 or extra:
        raise SizeMismatchError(
            f"{name} ({target.path}) is {'shorter' if remaining > 0 else 'longer'} than the "
            f"{target.length} bytes targets.json says"
        )
    found = digest.hexdigest()
    if found != expected:
        raise DigestMismatchError(
            f"{name} ({target.path}): expected sha256 {expected}, found {found}"
        )
    return target.length
