"""A cluster member's PKI made the way the controller role makes it, with the supplied
`ziti pki` (issue 13: no key leaves the host that owns it; ADR 0015).

Two folders stand for two hosts. The "first host" makes the root and signs; the "member"
makes its CA's key and request with `ziti pki`, receives only the certificate, and then
issues its own server and client certificates under it with `ziti pki`. The chain the
controller will present must lead to the root, and the first host must hold no key of
the member's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.crypto.member_ca import MemberCA, sign_member_ca
from tests.integration.overlay import supplied_program

DOMAIN = "site"
CA = "signing-ca-ctrl2"
CA_NAME = f"{DOMAIN} ctrl2 signing CA"


def _pki(ziti: Path, root: Path, *args: str) -> None:
    env = {**os.environ, "GODEBUG": "fips140=on"}
    subprocess.run(
        [str(ziti), "pki", "create", *args, f"--pki-root={root}"],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )


def _certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _public(path: Path) -> object:
    return serialization.load_pem_private_key(path.read_bytes(), None).public_key().public_numbers()  # type: ignore[union-attr]


def test_a_member_ca_signed_from_its_request_chains_to_the_root(tmp_path: Path) -> None:
    ziti = supplied_program("ziti", tmp_path)
    first, member = tmp_path / "first", tmp_path / "member"
    _pki(
        ziti,
        first,
        "ca",
        "--ca-file=root-ca",
        f"--ca-name={DOMAIN} root CA",
        f"--trust-domain={DOMAIN}",
    )
    # The member: its CA's key (self-signed for now) and a request from it, as the role does.
    _pki(ziti, member, "ca", f"--ca-file={CA}", f"--ca-name={CA_NAME}", f"--trust-domain={DOMAIN}")
    _pki(ziti, member, "csr", f"--key-name={CA}", "--csr-file=request", f"--csr-name={CA_NAME}")
    request = (member / CA / "certs" / "request.cert").read_bytes()

    signed = sign_member_ca(
        request,
        (first / "root-ca/certs/root-ca.cert").read_bytes(),
        (first / "root-ca/keys/root-ca.key").read_bytes(),
        MemberCA(CA_NAME, DOMAIN),
    )
    root_pem = (first / "root-ca/certs/root-ca.cert").read_bytes()
    (member / CA / "certs" / f"{CA}.cert").write_bytes(signed)
    (member / CA / "certs" / f"{CA}.chain.pem").write_bytes(signed + root_pem)
    spiffe = f"--spiffe-id=spiffe://{DOMAIN}/controller/ctrl2"
    _pki(
        ziti,
        member,
        "server",
        f"--ca-name={CA}",
        "--server-file=server",
        "--server-name=ctrl2",
        "--dns=localhost,ctrl2",
        "--ip=127.0.0.1,10.0.0.2",
        spiffe,
    )
    _pki(
        ziti,
        member,
        "client",
        f"--ca-name={CA}",
        "--client-file=client",
        "--key-file=server",
        "--client-name=ctrl2",
        spiffe,
    )

    root = x509.load_pem_x509_certificate(root_pem)
    for chain_file in ("server.chain.pem", "client.chain.pem"):
        leaf, ca, top = _certs(member / CA / "certs" / chain_file)
        leaf.verify_directly_issued_by(ca)
        ca.verify_directly_issued_by(root)
        assert top == root
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f"spiffe://{DOMAIN}/controller/ctrl2" in uris.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    # The CA certificate is for the key the member made, which stayed in the member's folder.
    member_ca = x509.load_pem_x509_certificate(signed)
    assert member_ca.public_key().public_numbers() == _public(member / CA / "keys" / f"{CA}.key")
    first_keys = sorted(p.name for p in first.rglob("*.key"))
    assert first_keys == ["root-ca.key"]
