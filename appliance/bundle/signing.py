"""The vendor's side of TUF: create the keys and root, and sign each bundle's metadata.

Made with python-tuf's Metadata API. Root expires after ROOT_EXPIRY; the other roles
after a period chosen per build (default TARGETS_EXPIRY) that covers media spending
weeks in transit and on a shelf: freshness at an air-gapped site comes from refusing
anything not newer than what it runs, not from short-lived timestamps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from appliance._fsutil import atomic_write_bytes, atomic_write_json
from appliance.crypto.keys import (
    KeyPair,
    fingerprint,
    generate_key,
    load_signer,
    private_key_path,
    write_private_key,
)
from appliance.errors import SigningKeyError
from appliance.media.layout import BUNDLE_FIELD, ROLES, versioned_root_name

__all__ = [
    "ROOT_EXPIRY",
    "TARGETS_EXPIRY",
    "KeysInit",
    "SignedMetadata",
    "init_keys",
    "root_history",
    "sign_bundle",
]

ROOT_EXPIRY = timedelta(days=365)
TARGETS_EXPIRY = timedelta(days=120)

_SERIALIZER = JSONSerializer(compact=False)


@dataclass(frozen=True)
class KeysInit:
    """What `keys init` made."""

    root_path: Path
    fingerprint: str
    root_threshold: int
    root_keys: int


@dataclass(frozen=True)
class SignedMetadata:
    """The four metadata files of one bundle, as bytes, by file name."""

    files: dict[str, bytes]
    root_history: dict[int, bytes]


def init_keys(
    keys_dir: Path,
    *,
    root_threshold: int = 1,
    root_keys: int = 1,
    passphrase: bytes | None = None,
    now: datetime | None = None,
) -> KeysInit:
    """Generate P-384 keys for every role and write the signed root (version 1)."""
    if not 1 <= root_threshold <= root_keys:
        raise SigningKeyError(
            f"root threshold {root_threshold} of {root_keys} keys: expected 1 <= threshold <= keys"
        )
    if keys_dir.exists() and any(keys_dir.iterdir()):
        raise SigningKeyError(
            f"{keys_dir} is not empty: refusing to overwrite signing keys",
            hint="choose a new folder; rotating keys is a root rotation, not a new init",
        )
    keys_dir.mkdir(parents=True, exist_ok=True)
    keys_dir.chmod(0o700)
    now = now or datetime.now(UTC)

    root = Root(expires=_expiry(now, ROOT_EXPIRY), consistent_snapshot=False)
    root_pairs = [generate_key() for _ in range(root_keys)]
    for pair in root_pairs:
        root.add_key(pair.public, Root.type)
    root.roles[Root.type] = Role([p.keyid for p in root_pairs], root_threshold)
    others: dict[str, KeyPair] = {}
    for role in ROLES[1:]:
        pair = generate_key()
        root.add_key(pair.public, role)
        others[role] = pair

    metadata = Metadata(root)
    for pair in root_pairs:
        metadata.sign(pair.signer, append=True)
    root_bytes = metadata.to_bytes(_SERIALIZER)

    for index, pair in enumerate(root_pairs, start=1):
        write_private_key(private_key_path(keys_dir, "root", index), pair, passphrase)
    for role, pair in others.items():
        write_private_key(private_key_path(keys_dir, role), pair, passphrase)
    atomic_write_bytes(keys_dir / versioned_root_name(1), root_bytes)
    atomic_write_bytes(keys_dir / "root.json", root_bytes)
    atomic_write_json(keys_dir / "state.json", dict.fromkeys(ROLES[1:], 0))
    return KeysInit(keys_dir / "root.json", fingerprint(root_bytes), root_threshold, root_keys)


def sign_bundle(
    keys_dir: Path,
    targets: dict[str, TargetFile],
    *,
    bundle: dict[str, Any],
    passphrase: bytes | None = None,
    expires_in: timedelta = TARGETS_EXPIRY,
    now: datetime | None = None,
) -> SignedMetadata:
    """Sign targets, snapshot and timestamp for one bundle with the keys in ``keys_dir``.

    Metadata versions continue from the last bundle signed with these keys, so a site
    that installed an earlier bundle sees the new metadata as newer.
    """
    now = now or datetime.now(UTC)
    history = root_history(keys_dir)
    root_bytes = history[max(history)]
    root = Metadata[Root].from_bytes(root_bytes).signed
    state = _read_state(keys_dir)
    signers = {
        role: load_signer(private_key_path(keys_dir, role), passphrase) for role in ROLES[1:]
    }
    for role, pair in signers.items():
        if pair.keyid not in root.roles[role].keyids:
            raise SigningKeyError(
                f"{private_key_path(keys_dir, role)} is not a {role} key of the root in "
                f"{keys_dir} (key id {pair.keyid[:16]}…)"
            )
    expires = _expiry(now, expires_in)
    versions = {role: state[role] + 1 for role in ROLES[1:]}

    targets_md = Metadata(
        Targets(
            version=versions["targets"],
            expires=expires,
            targets=targets,
            unrecognized_fields={BUNDLE_FIELD: bundle},
        )
    )
    targets_md.sign(signers["targets"].signer)
    targets_bytes = targets_md.to_bytes(_SERIALIZER)

    snapshot_md = Metadata(
        Snapshot(
            version=versions["snapshot"],
            expires=expires,
            meta={
                "targets.json": MetaFile(
                    versions["targets"], len(targets_bytes), {"sha256": _sha256(targets_bytes)}
                )
            },
        )
    )
    snapshot_md.sign(signers["snapshot"].signer)
    snapshot_bytes = snapshot_md.to_bytes(_SERIALIZER)

    timestamp_md = Metadata(
        Timestamp(
            version=versions["timestamp"],
            expires=expires,
            snapshot_meta=MetaFile(
                versions["snapshot"], len(snapshot_bytes), {"sha256": _sha256(snapshot_bytes)}
            ),
        )
    )
    timestamp_md.sign(signers["timestamp"].signer)
    timestamp_bytes = timestamp_md.to_bytes(_SERIALIZER)

    atomic_write_json(keys_dir / "state.json", versions)
    return SignedMetadata(
        files={
            "root.json": root_bytes,
            "timestamp.json": timestamp_bytes,
            "snapshot.json": snapshot_bytes,
            "targets.json": targets_bytes,
        },
        root_history=history,
    )


def root_history(keys_dir: Path) -> dict[int, bytes]:
    """Every root version the keys folder holds (``N.root.json``), by version."""
    history: dict[int, bytes] = {}
    version = 1
    while (path := keys_dir / versioned_root_name(version)).is_file():
        history[version] = path.read_bytes()
        version += 1
    if not history:
        raise SigningKeyError(
            f"{keys_dir} holds no root metadata (1.root.json)",
            hint="create keys with `appliance keys init DIR`",
        )
    return history


def _read_state(keys_dir: Path) -> dict[str, int]:
    try:
        state = json.loads((keys_dir / "state.json").read_text(encoding="utf-8"))
        return {role: int(state[role]) for role in ROLES[1:]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SigningKeyError(f"{keys_dir / 'state.json'} is missing or unreadable") from exc


def _expiry(now: datetime, delta: timedelta) -> datetime:
    return (now + delta).replace(microsecond=0)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
