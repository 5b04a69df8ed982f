"""A cluster member's signing CA is signed from its request on the first host (issue 13:
keys never leave the host that owns them). The root here is made with `cryptography`;
tests/integration/test_member_ca_ziti.py does the same with the supplied `ziti pki`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.crypto.member_ca import CertificateRequestError, MemberCA, sign_member_ca

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
MEMBER = MemberCA("site ctrl2 signing CA", "site")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(obj: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _self_signed(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    algorithm: hashes.SHA256 | hashes.SHA384,
    *,
    key_identifier: bool,
) -> x509.Certificate:
    """A root like `ziti pki create ca`'s: self-signed CA, valid a year from NOW."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("site root CA"))
        .issuer_name(_name("site root CA"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if key_identifier:
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = builder.add_extension(ski, critical=False)
    return builder.sign(key, algorithm)


@pytest.fixture(scope="module")
def root() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _self_signed(key, hashes.SHA256(), key_identifier=True), key


@pytest.fixture(scope="module")
def member_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _request(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    return _pem(builder.sign(key, hashes.SHA256()))


def _sign(
    root: tuple[x509.Certificate, rsa.RSAPrivateKey], request: bytes, **kw: object
) -> x509.Certificate:
    cert, key = root
    signed = sign_member_ca(request, _pem(cert), _key_pem(key), MEMBER, now=kw.pop("now", NOW))  # type: ignore[arg-type]
    return x509.load_pem_x509_certificate(signed)


def test_the_member_ca_is_issued_by_the_root_for_the_members_own_key(root, member_key) -> None:
    cert = _sign(root, _request(member_key, MEMBER.common_name))

    cert.verify_directly_issued_by(root[0])
    assert cert.public_key().public_numbers() == member_key.public_key().public_numbers()
    assert cert.subject == _name("site ctrl2 signing CA")
    assert cert.issuer == root[0].subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value == (
        x509.BasicConstraints(ca=True, path_length=1)
    )
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.key_cert_sign, usage.crl_sign, usage.digital_signature) == (True, True, True)
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://site"]
    authority = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = root[0].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert authority.key_identifier == root_ski.digest
    # Valid on every host now despite a little clock skew, and never past the root.
    assert cert.not_valid_before_utc == NOW - timedelta(hours=1)
    assert cert.not_valid_after_utc == root[0].not_valid_after_utc


def test_ziti_pki_labels_its_request_certificate_and_that_is_accepted(root, member_key) -> None:
    as_ziti_writes_it = _request(member_key, MEMBER.common_name).replace(
        b"CERTIFICATE REQUEST", b"CERTIFICATE"
    )
    cert = _sign(root, as_ziti_writes_it)
    assert cert.public_key().public_numbers() == member_key.public_key().public_numbers()


def test_an_ec_request_is_signed(root) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = _sign(root, _request(key, MEMBER.common_name))
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_an_altered_request_is_refused(root, member_key) -> None:
    request = x509.load_pem_x509_csr(_request(member_key, MEMBER.common_name))
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    der[-10] ^= 0xFF  # inside the signature: the request no longer proves the key
    altered = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(CertificateRequestError, match="not signed by the key it carries"):
        _sign(root, _pem(altered))


def test_a_request_for_another_member_is_refused(root, member_key) -> None:
    with pytest.raises(
        CertificateRequestError, match="'site ctrl3 signing CA', not for 'site ctrl2"
    ):
        _sign(root, _request(member_key, "site ctrl3 signing CA"))


def test_a_weak_key_is_refused(root) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused
    with pytest.raises(CertificateRequestError, match="not RSA of 2048 bits or more"):
        _sign(root, _request(weak, MEMBER.common_name))


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"", "found 0 PEM blocks"),
        (
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "is not a certificate request",
        ),
    ],
)
def test_garbage_is_refused_with_what_to_pass(root, data: bytes, found: str) -> None:
    with pytest.raises(CertificateRequestError, match=found) as caught:
        _sign(root, data)
    assert "ziti pki create csr" in (caught.value.hint or "")


def test_a_root_key_of_another_ca_is_refused(root, member_key) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(CertificateRequestError, match="does not belong to its certificate"):
        sign_member_ca(
            _request(member_key, MEMBER.common_name),
            _pem(root[0]),
            _key_pem(other),
            MEMBER,
            now=NOW,
        )


def test_an_expired_root_signs_nothing(root, member_key) -> None:
    with pytest.raises(CertificateRequestError, match="root CA expired"):
        _sign(root, _request(member_key, MEMBER.common_name), now=NOW + timedelta(days=400))


def test_the_command_reads_the_request_and_prints_the_certificate(
    root, member_key, tmp_path: Path
) -> None:
    (tmp_path / "root.cert").write_bytes(_pem(root[0]))
    (tmp_path / "root.key").write_bytes(_key_pem(root[1]))
    args = [
        "admin",
        "sign-controller-ca",
        "--ca-cert",
        str(tmp_path / "root.cert"),
        "--ca-key",
        str(tmp_path / "root.key"),
        "--name",
        MEMBER.common_name,
        "--trust-domain",
        "site",
    ]
    done = CliRunner().invoke(app, args, input=_request(member_key, MEMBER.common_name))
    assert done.exit_code == 0, done.output
    x509.load_pem_x509_certificate(done.stdout.encode()).verify_directly_issued_by(root[0])

    (tmp_path / "root.key").unlink()  # moved offline
    missing = CliRunner().invoke(app, args, input=_request(member_key, MEMBER.common_name))
    assert isinstance(missing.exception, CertificateRequestError)
    assert "cannot read the root CA" in str(missing.exception)
    assert "moved offline" in (missing.exception.hint or "")


def test_the_member_ca_is_signed_with_the_roots_own_hash(member_key) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    ec_root = _self_signed(key, hashes.SHA384(), key_identifier=False)
    signed = sign_member_ca(
        _request(member_key, MEMBER.common_name), _pem(ec_root), _key_pem(key), MEMBER, now=NOW
    )
    cert = x509.load_pem_x509_certificate(signed)
    cert.verify_directly_issued_by(ec_root)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
