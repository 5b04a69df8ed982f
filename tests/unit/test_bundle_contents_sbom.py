"""Issue 16: each image's own SBOM travels in the bundle, linked from the bundle's SBOM;
`bundle inspect` summarises it, `bundle sbom` writes it out, and `bundle audit` matches it
against an OSV database file offline. (The image SBOM is written here from known packages;
tests/integration/test_admin_image.py checks one made from a real image.)"""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from appliance.bundle.inspect import inspect_bundle
from appliance.media.reader import DirectoryReader
from appliance.sbom import Package, make_image_sbom
from tests.unit.appliance_cli import cli
from tests.unit.bundle_fixtures import Built, build, stored

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "ziti-controller": [
        Package(
            "golang",
            "github.com/openziti/ziti/v2",
            "v2.0.3",
            "usr/local/bin/ziti",
            detail="github.com/openziti/ziti/v2/ziti",
        ),
        Package("golang", "golang.org/x/net", "v0.20.0", "usr/local/bin/ziti", go_sum="h1:x="),
        Package(
            "deb",
            "libssl3",
            "3.0.11-1~deb12u2",
            "var/lib/dpkg/status",
            "Apache-2.0",
            "amd64",
            source="openssl",
        ),
    ],
    "ziti-router": [
        Package(
            "pypi", "Jinja2", "3.1.2", "opt/venv/lib/python3.11/site-packages/x", "BSD-3-Clause"
        ),
    ],
}
ADVISORIES = [
    {  # Go range, fixed later: affected
        "id": "GO-2024-0001",
        "aliases": ["CVE-2024-0001"],
        "summary": "x/net: a flaw",
        "affected": [
            {
                "package": {"ecosystem": "Go", "name": "golang.org/x/net"},
                "ranges": [
                    {"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.23.0"}]}
                ],
            }
        ],
    },
    {  # Debian names the source package: libssl3 comes from openssl
        "id": "DSA-5000-1",
        "summary": "openssl: another flaw",
        "affected": [
            {
                "package": {"ecosystem": "Debian:12", "name": "openssl"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}],
                    }
                ],
            }
        ],
    },
    {  # PyPI, by normalised name and an explicit version
        "id": "PYSEC-2024-1",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2"}, "versions": ["3.1.2"]}],
    },
    {  # fixed before the version inside: not listed
        "id": "GO-2020-0002",
        "affected": [
            {
                "package": {"ecosystem": "Go", "name": "golang.org/x/net"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.1.0"}]}],
            }
        ],
    },
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("contents")
    for name, packages in PACKAGES.items():
        sbom = root / "build/components" / f"{name}.cdx.json"
        sbom.parent.mkdir(parents=True, exist_ok=True)
        sbom.write_bytes(
            make_image_sbom(
                name, "2.0.3", packages, {}, datetime(2026, 11, 1, tzinfo=UTC), serial=UUID(int=1)
            )
        )
    return build(root)


def test_the_bundle_sbom_links_each_image_sbom_by_digest(built: Built) -> None:
    made = built.root / "build/components/ziti-controller.cdx.json"
    target = "sbom/images/ziti-controller.cdx.json"
    assert stored(built.bundle, target).read_bytes() == made.read_bytes()
    bundle_sbom = json.loads(stored(built.bundle, "sbom.cdx.json").read_bytes())
    (image,) = [c for c in bundle_sbom["components"] if c["name"] == "ziti-controller"]
    (link,) = image["externalReferences"]
    assert (link["type"], link["url"]) == ("bom", target)
    assert link["hashes"] == [
        {"alg": "SHA-256", "content": hashlib.sha256(made.read_bytes()).hexdigest()}
    ]


def test_inspect_counts_each_images_packages(built: Built) -> None:
    summary = {c.name: c for c in inspect_bundle(DirectoryReader(built.bundle)).components}
    assert summary["ziti-controller"].contents == {"deb": 1, "golang": 2}
    assert summary["ziti-router"].contents == {"pypi": 1}
    assert summary["ziti-controller"].files == 0  # the SBOM is no file of the component


def test_sbom_writes_them_out_verified_or_says_it_did_not_verify(
    built: Built, tmp_path: Path
) -> None:
    fingerprint = built.result.root_fingerprint
    out = tmp_path / "verified"
    done = cli(
        "bundle", "sbom", str(built.bundle), "--out", str(out), "--root-fingerprint", fingerprint
    )
    assert done.returncode == 0, done.stderr
    assert "2 image SBOMs (bundle lab 2026.11.0 verified)" in done.stdout
    assert (out / "sbom/images/ziti-router.cdx.json").read_bytes() == stored(
        built.bundle, "sbom/images/ziti-router.cdx.json"
    ).read_bytes()
    assert (
        json.loads((out / "sbom.cdx.json").read_bytes())["metadata"]["component"]["name"] == "lab"
    )
    unverified = cli("bundle", "sbom", str(built.bundle), "--out", str(tmp_path / "plain"))
    assert "bundle not verified" in unverified.stdout
    again = cli("bundle", "sbom", str(built.bundle), "--out", str(out))
    assert again.returncode == 1 and "is not an empty folder" in again.stderr


def test_audit_names_each_affected_package_offline(built: Built, tmp_path: Path) -> None:
    db = tmp_path / "all.zip"
    with zipfile.ZipFile(db, "w") as archive:
        for advisory in ADVISORIES:
            archive.writestr(f"{advisory['id']}.json", json.dumps(advisory))
    done = cli("bundle", "audit", str(built.bundle), "--db", str(db))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "checked 1 deb, 2 golang, 1 pypi in 2 images against 4 advisories" in done.stdout
    assert "3 known vulnerabilities" in done.stdout
    for line in (
        "ziti-controller: golang.org/x/net v0.20.0  GO-2024-0001 (CVE-2024-0001)  fixed in "
        "0.23.0: x/net: a flaw",
        "ziti-controller: libssl3 3.0.11-1~deb12u2  DSA-5000-1  fixed in 3.0.13-1~deb12u1",
        "ziti-router: Jinja2 3.1.2  PYSEC-2024-1  no fixed version",
    ):
        assert line in done.stdout, done.stdout
    assert "GO-2020-0002" not in done.stdout
    harmless = tmp_path / "harmless.json"
    harmless.write_text(json.dumps(ADVISORIES[3]))
    clean = cli("bundle", "audit", str(built.bundle), "--db", str(harmless))
    assert clean.returncode == 0 and "no known vulnerabilities" in clean.stdout


def test_a_bad_database_or_an_altered_sbom_is_a_clear_error(built: Built, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    done = cli("bundle", "audit", str(built.bundle), "--db", str(broken))
    assert done.returncode == 1 and "cannot be read as an OSV database" in done.stderr
    assert "Traceback" not in done.stderr
    blob = stored(built.bundle, "sbom/images/ziti-router.cdx.json")
    original = blob.read_bytes()
    blob.chmod(0o644)
    try:
        blob.write_bytes(original.replace(b"3.1.2", b"3.1.9"))
        altered = cli("bundle", "sbom", str(built.bundle), "--out", str(tmp_path / "x"))
        assert altered.returncode == 1
        assert "sbom/images/ziti-router.cdx.json does not match the digest" in altered.stderr
    finally:
        blob.write_bytes(original)
