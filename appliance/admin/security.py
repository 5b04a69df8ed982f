"""Passwords, TOTP, session and API tokens: FIPS-approved primitives only.

Passwords: PBKDF2-HMAC-SHA256 with a 16-byte salt and 600,000 iterations (OWASP 2023);
tokens: 32 random bytes, stored as their SHA-256. TOTP (RFC 6238) uses HMAC-SHA-1 as
authenticator apps expect; HMAC-SHA-1 remains approved for authentication (SP 800-131A).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pyotp

__all__ = [
    "PBKDF2_ITERATIONS",
    "hash_password",
    "hash_token",
    "new_password",
    "new_token",
    "new_totp_secret",
    "verify_password",
    "verify_totp",
]

PBKDF2_ITERATIONS = 600_000
_SCHEME = "pbkdf2_sha256"


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    """``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (base64, no padding)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{_SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a hash_password string."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest + "==")
        candidate = hashlib.pbkdf2_hmac(
            "sha256", password.encode("utf-8"), base64.b64decode(salt + "=="), int(iterations)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, expected)


def new_password() -> str:
    """A one-time password for a new account: 20 characters, about 119 bits."""
    return secrets.token_urlsafe(15)


def new_token() -> str:
    """A session or API token: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database stores for a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_totp_secret() -> str:
    """A base32 TOTP secret for an authenticator app."""
    return pyotp.random_base32()


def verify_totp(secret: str, code: str) -> bool:
    """True for the current code or the one before or after (30 s clock drift)."""
    return pyotp.TOTP(secret).verify(code.strip(), valid_window=1)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")
