"""The SSH algorithms the vendor shell proxy offers and uses, on both of its connections.

FIPS 140-3 approved only, as the rest of the site's crypto (docs/install.md, FIPS): key exchange
over the NIST curves or finite-field groups with SHA-2, AES (GCM first, CTR with an
HMAC-SHA-2 MAC for older clients), ECDSA and RSA signatures with SHA-2. No
chacha20-poly1305 and no curve25519, which OpenSSH and asyncssh prefer by default and
FIPS mode does not allow.

AES-GCM first also for speed: asyncssh drives AES-GCM through one OpenSSL context per
direction, where its chacha20-poly1305 builds several cipher contexts per packet; the
proxy decrypts and encrypts every byte twice (vendor side and target side), so the
cipher's cost per packet sets how close a recorded session comes to a direct one
(benchmarks/vendor_shell.py).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALGORITHMS"]

#: asyncssh connection options; the same for the server towards the vendor and the client
#: towards the target.
ALGORITHMS: dict[str, Any] = {
    "kex_algs": [
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group14-sha256",
    ],
    "encryption_algs": [
        "aes256-gcm@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-ctr",
        "aes128-ctr",
    ],
    "mac_algs": [
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
    ],
    "compression_algs": ["none"],
}
