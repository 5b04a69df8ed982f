"""Issue 16: versions ordered as each ecosystem orders them, and OSV ranges read as the
OSV schema defines them (the whole `bundle audit` path: test_bundle_contents_sbom.py)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.bundle.vulns import OsvError, debian_compare, load_osv, semver_compare
from appliance.sbom import ListedPackage

DEBIAN = [
    "0",
    "1.0~rc1",
    "1.0~rc1-1",
    "1.0",
    "1.0-1~bpo1",
    "1.0-1",
    "1.0-2",
    "1.0a",  # letters sort before other characters
    "1.0+deb12u1",
    "1.0.1",
    "1.9",
    "1.10",
    "2.36-9",
    "2.36-9+deb12u9",
    "2.36-9+deb12u10",
    "1:0.9",
]


def test_debian_versions_sort_as_dpkg_sorts_them() -> None:
    for a, b in itertools.combinations(DEBIAN, 2):  # listed in increasing order
        assert debian_compare(a, b) == -1, (a, b)
        assert debian_compare(b, a) == 1, (b, a)
    assert debian_compare("1.0-0", "1.0") == 0  # a missing revision is revision 0


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="no dpkg to compare with")
def test_debian_order_matches_dpkg_itself() -> None:
    for a, b in itertools.product(DEBIAN[::3], DEBIAN[1::3]):
        less = subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False)
        assert (debian_compare(a, b) < 0) == (less.returncode == 0), (a, b)


def test_semantic_versions_and_go_pseudo_versions() -> None:
    ordered = [
        "v0.1.0",
        "v0.20.0-0.20240101000000-abcdef123456",
        "v0.20.0-rc.1",
        "v0.20.0",
        "v0.20.1",
        "v1.0.0",
        "v1.10.0",
        "v2.0.0+incompatible",
    ]
    for a, b in itertools.combinations(ordered, 2):
        assert semver_compare(a, b) == -1, (a, b)
    assert semver_compare("0.23.0", "v0.23.0") == 0  # OSV writes Go versions without "v"


def _affected(tmp_path: Path, events: list[dict[str, str]], version: str) -> bool:
    db = tmp_path / "one.json"
    db.write_text(
        json.dumps(
            {
                "id": "X-1",
                "affected": [
                    {
                        "package": {"ecosystem": "PyPI", "name": "Some_Package"},
                        "ranges": [{"type": "ECOSYSTEM", "events": events}],
                    }
                ],
            }
        )
    )
    package = ListedPackage("pypi", "some-package", version)
    return bool(list(load_osv(db).affecting("img", package)))


@pytest.mark.parametrize(
    ("events", "version", "affected"),
    [
        ([{"introduced": "0"}, {"fixed": "2.0"}], "1.9", True),
        ([{"introduced": "0"}, {"fixed": "2.0"}], "2.0", False),
        ([{"introduced": "1.5"}, {"fixed": "2.0"}], "1.4", False),
        ([{"introduced": "1.5"}], "9.0", True),  # never fixed
        ([{"introduced": "1.0"}, {"last_affected": "1.2"}], "1.2", True),
        ([{"introduced": "1.0"}, {"last_affected": "1.2"}], "1.2.1", False),
        (
            [{"introduced": "1.0"}, {"fixed": "1.1"}, {"introduced": "2.0"}, {"fixed": "2.1"}],
            "1.5",
            False,
        ),
        (
            [{"introduced": "1.0"}, {"fixed": "1.1"}, {"introduced": "2.0"}, {"fixed": "2.1"}],
            "2.0.5",
            True,
        ),
        ([{"introduced": "0"}, {"fixed": "10.0"}], "9.0", True),  # not a text comparison
    ],
)
def test_ranges(tmp_path: Path, events: list[dict[str, str]], version: str, affected: bool) -> None:
    assert _affected(tmp_path, events, version) is affected


def test_an_unreadable_database_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(OsvError, match="does not exist"):
        load_osv(tmp_path / "missing.zip")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder/bad.json").write_text('{"affected": []}')
    with pytest.raises(OsvError, match="bad.json is not an OSV advisory"):
        load_osv(tmp_path / "folder")
