"""The llm-gateway's virtual keys: sealed in the database, unsealed for its configuration.

Upstream llm-gateway compares a client's bearer token with the keys in its configuration
file, so the site must be able to write them there, not only check them. Each key is kept
twice: its sha256 (for showing which key a record means) and sealed with AES-256-GCM under
a key file of the admin service's own (root only, beside its database): a copy of the
database alone does not give the keys away. ``appliance admin gateway-keys`` unseals them
for the installer's ``llm_gateway`` role, which writes them into the root-only gateway
configuration on the gateway host.
"""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.db.models import GatewayKey, ModelGrant
from appliance.errors import ApplianceError

__all__ = ["GatewayKeyError", "KeySealer", "VirtualKey", "virtual_keys"]

_KEY_BYTES = 32
_NONCE_BYTES = 12
#: Binds a sealed value to its purpose: it cannot be passed off as anything else.
_CONTEXT = b"appliance llm-gateway key v1"


class GatewayKeyError(ApplianceError):
    """A sealed gateway key could not be made or opened."""


class KeySealer:
    """AES-256-GCM under the key in ``key_file`` (made, 0600, the first time it is needed)."""

    def __init__(self, key_file: Path) -> None:
        self._file = key_file

    def seal(self, secret: str) -> str:
        """``secret`` sealed, as base64 text (nonce, then ciphertext and tag)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._key(create=True)).encrypt(nonce, secret.encode(), _CONTEXT)
        return base64.b64encode(nonce + sealed).decode("ascii")

    def unseal(self, sealed: str) -> str:
        """The secret ``seal`` gave ``sealed``; GatewayKeyError if it was not sealed here."""
        try:
            raw = base64.b64decode(sealed, validate=True)
            plain = AESGCM(self._key(create=False)).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _CONTEXT
            )
        except (InvalidTag, ValueError) as exc:
            raise GatewayKeyError(
                f"a gateway key does not open with {self._file}: the database and the key "
                "file are not from the same site",
                hint="restore the key file that belongs with this database, or revoke and "
                "grant the model again",
            ) from exc
        return plain.decode()

    def _key(self, *, create: bool) -> bytes:
        with contextlib.suppress(FileNotFoundError):
            return self._read()
        if not create:
            raise GatewayKeyError(
                f"the gateway key file {self._file} is missing",
                hint="restore it from the site's backup, or revoke and grant the models again",
            )
        self._file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return self._read()
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(_KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        return self._read()

    def _read(self) -> bytes:
        key = self._file.read_bytes()
        if len(key) != _KEY_BYTES:
            raise GatewayKeyError(
                f"the gateway key file {self._file} holds {len(key)} bytes, not {_KEY_BYTES}",
                hint="restore it from the site's backup",
            )
        return key


@dataclass(frozen=True)
class VirtualKey:
    """One entry of the gateway's ``api_keys.keys``."""

    name: str
    key: str
    allowed_models: list[str]


def virtual_keys(db: Session, sealer: KeySealer) -> list[VirtualKey]:
    """Every grant's key that can be written into the gateway's configuration, by grant."""
    rows = db.execute(
        select(GatewayKey, ModelGrant)
        .join(ModelGrant, GatewayKey.grant_id == ModelGrant.id)
        .where(GatewayKey.sealed_key.is_not(None))
        .order_by(GatewayKey.id)
    )
    return [
        VirtualKey(
            name=f"grant-{grant.id}-{grant.subject[1:]}",
            key=sealer.unseal(key.sealed_key or ""),
            allowed_models=list(key.allowed_models),
        )
        for key, grant in rows
    ]
