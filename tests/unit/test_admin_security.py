"""Passwords, tokens and TOTP: FIPS-approved primitives, constant-time checks."""

from __future__ import annotations

import pyotp

from appliance.admin.security import (
    PBKDF2_ITERATIONS,
    hash_password,
    hash_token,
    new_password,
    new_totp_secret,
    verify_password,
    verify_totp,
)


def test_password_hash_round_trip_and_format() -> None:
    stored = hash_password("correct horse battery", iterations=1000)
    scheme, iterations, _salt, _digest = stored.split("$")
    assert (scheme, iterations) == ("pbkdf2_sha256", "1000")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert hash_password("x", iterations=1000) != hash_password("x", iterations=1000)  # salted
    assert PBKDF2_ITERATIONS >= 600_000


def test_malformed_hash_never_verifies() -> None:
    for stored in ("", "md5$1$a$b", "pbkdf2_sha256$x$y$z", "pbkdf2_sha256$1000$$"):
        assert not verify_password("anything", stored)


def test_tokens_and_generated_passwords() -> None:
    assert len(new_password()) == 20
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_totp() -> None:
    secret = new_totp_secret()
    assert verify_totp(secret, pyotp.TOTP(secret).now())
    assert not verify_totp(secret, "000000") or pyotp.TOTP(secret).now() == "000000"
