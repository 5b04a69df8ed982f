"""The seal: a manifest of every chunk and the last link, signed with the audit log's key.

The key is the admin service's ECDSA P-384 audit key (:mod:`appliance.audit.signing_key`),
so an auditor who trusts the audit log's exports trusts recordings with the same public
key, offline. The manifest is written atomically (temporary file, fsync, rename): a
recording has a whole seal or none. Its sha256 goes into the audit log
(:mod:`appliance.breakglass.recording.evidence`), which ties the recording to the window.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from appliance._fsutil import atomic_write_bytes
from appliance.audit.recordings.layout import FORMAT, MANIFEST, SIGNATURE_ALGORITHM, canonical
from appliance.audit.signing_key import key_id

__all__ = ["sign_manifest", "write_manifest"]


def sign_manifest(body: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """``body`` with the format, the signing key's id and its signature added."""
    signed = {**body, "format": FORMAT, "key_id": key_id(key)}
    signature = key.sign(canonical(signed), SIGNATURE_ALGORITHM)
    return {**signed, "signature": signature.hex()}


def write_manifest(folder: Path, manifest: dict[str, Any]) -> str:
    """Write the signed manifest into ``folder`` atomically (0600); its sha256, hex."""
    data = (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
    atomic_write_bytes(folder / MANIFEST, data, mode=0o600)
    return hashlib.sha256(data).hexdigest()
