"""The audit signing key is made once, exclusively, and only loaded elsewhere (issue 14,
item 2): loading never creates, and two processes starting together share one key."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.signing_key import (
    KEY_FILE,
    AuditKeyError,
    AuditKeyMissingError,
    create_key,
    key_id,
    load_key,
)


def test_loading_never_creates_a_key(tmp_path: Path) -> None:
    with pytest.raises(AuditKeyMissingError, match=f"no audit signing key in {tmp_path}") as caught:
        load_key(tmp_path)
    assert caught.value.path == tmp_path / KEY_FILE
    assert list(tmp_path.iterdir()) == []


def test_a_key_is_made_once_even_by_racing_makers(tmp_path: Path) -> None:
    results: list[bool] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        results.append(create_key(tmp_path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    key = load_key(tmp_path)
    assert not create_key(tmp_path)
    assert key_id(load_key(tmp_path)) == key_id(key)


def test_a_key_of_another_kind_is_refused(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / KEY_FILE).write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(AuditKeyError, match="expected an ECDSA P-384 key"):
        load_key(tmp_path)
