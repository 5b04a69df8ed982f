"""Issue 16: an image's packages read from its files (a root filesystem laid out here),
Go build information read without a Go toolchain, and the image SBOM made from them."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from appliance.components.contents import read_root
from appliance.components.program import parse_build_info
from appliance.sbom import image_sbom_packages, make_image_sbom, summarise_image_sbom

STATUS = """Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl (3.0.15-1~deb12u1)
Version: 3.0.15-1~deb12u1

Package: removed-thing
Status: deinstall ok config-files
Version: 1.0

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b7
"""
DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: openssl

Files: *
Copyright: The OpenSSL Project
License: Apache-2.0

Files: debian/*
License: GPL-2+
"""


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def go_binary(path: Path, modinfo: str, version: str = "go1.26.8") -> Path:
    """An ELF file carrying Go 1.18+ build information (strings inline), as the linker
    writes it: the header 16-byte aligned, the module text between 16-byte sentinels."""
    header = b"\xff Go buildinf:" + bytes([8, 0x2]) + bytes(16)
    text = bytes(16) + modinfo.encode() + bytes(16)
    body = header + _varint(len(version)) + version.encode() + _varint(len(text)) + text
    data = b"\x7fELF" + bytes(28) + body + bytes(64)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o755)
    return path


MODINFO = (
    "path\texample.com/tool/cmd/tool\n"
    "mod\texample.com/tool\tv1.2.3\th1:main=\n"
    "dep\tgolang.org/x/net\tv0.20.0\th1:net=\n"
    "dep\tgithub.com/old/lib\tv1.0.0\n"
    "=>\tgithub.com/fork/lib\tv1.0.1\th1:fork=\n"
    "build\t-trimpath=true\n"
    "build\tGOFIPS140=v1.0.0\n"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    (root / "usr/share/doc/libssl3").mkdir(parents=True)
    (root / "usr/share/doc/libssl3/copyright").write_text(DEP5)
    site = root / "opt/venv/lib/python3.11/site-packages"
    for name, version, header in (
        ("Jinja2", "3.1.4", "License-Expression: BSD-3-Clause"),
        ("certifi", "2024.8.30", "License: MPL-2.0"),
        ("idna", "3.10", "Classifier: License :: OSI Approved :: BSD License"),
    ):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n{header}\n"
        )
    debian = root / "usr/lib/python3/dist-packages/apt_pkg-2.6.dist-info"
    debian.mkdir(parents=True)  # Debian's own: listed as the Debian package, not twice
    (debian / "METADATA").write_text("Name: apt-pkg\nVersion: 2.6\n")
    go_binary(root / "usr/local/bin/tool", MODINFO)
    (root / "usr/local/bin/script").write_text("#!/bin/sh\n")
    (root / "usr/local/bin/script").chmod(0o755)
    return root


def test_go_build_information_as_go_version_m_prints_it(tmp_path: Path) -> None:
    info = parse_build_info(go_binary(tmp_path / "tool", MODINFO))
    assert info is not None
    assert (info.go_version, info.path, info.main_module, info.main_version) == (
        "go1.26.8",
        "example.com/tool/cmd/tool",
        "example.com/tool",
        "v1.2.3",
    )
    assert info.settings == {"-trimpath": "true", "GOFIPS140": "v1.0.0"}
    assert [(m.path, m.version, m.go_sum) for m in info.modules] == [
        ("example.com/tool", "v1.2.3", "h1:main="),
        ("golang.org/x/net", "v0.20.0", "h1:net="),
        ("github.com/fork/lib", "v1.0.1", "h1:fork="),  # the replacement, not the original
    ]
    elf = tmp_path / "not-go"
    elf.write_bytes(b"\x7fELF" + bytes(100))
    assert parse_build_info(elf) is None
    assert parse_build_info(tmp_path / "missing") is None


@pytest.mark.skipif(shutil.which("go") is None, reason="no Go toolchain to compare with")
def test_a_real_go_program_reads_as_go_version_m_reads_it() -> None:
    go = shutil.which("go")
    assert go is not None
    info = parse_build_info(Path(go))
    printed = subprocess.run([go, "version", "-m", go], capture_output=True, text=True, check=True)
    assert info is not None and printed.stdout.startswith(f"{go}: {info.go_version}\n")
    assert f"\tpath\t{info.path}\n" in printed.stdout


def test_every_package_of_the_root_is_found(root: Path) -> None:
    found = {(p.ecosystem, p.name, p.version): p for p in read_root(root)}
    assert set(found) == {
        ("deb", "bash", "5.2.15-2+b7"),
        ("deb", "libssl3", "3.0.15-1~deb12u1"),
        ("golang", "example.com/tool", "v1.2.3"),
        ("golang", "github.com/fork/lib", "v1.0.1"),
        ("golang", "golang.org/x/net", "v0.20.0"),
        ("pypi", "certifi", "2024.8.30"),
        ("pypi", "idna", "3.10"),
        ("pypi", "Jinja2", "3.1.4"),
    }
    libssl = found[("deb", "libssl3", "3.0.15-1~deb12u1")]
    assert (libssl.licence, libssl.detail, libssl.source) == ("Apache-2.0", "amd64", "openssl")
    assert found[("deb", "bash", "5.2.15-2+b7")].source == "bash"
    assert found[("pypi", "Jinja2", "3.1.4")].licence == "BSD-3-Clause"
    assert found[("pypi", "certifi", "2024.8.30")].licence == "MPL-2.0"
    assert found[("pypi", "idna", "3.10")].licence == "BSD License"
    main = found[("golang", "example.com/tool", "v1.2.3")]
    assert (main.location, main.detail) == ("usr/local/bin/tool", "example.com/tool/cmd/tool")


def test_the_image_sbom_lists_them_with_purls_hashes_and_licences(root: Path) -> None:
    packages = read_root(root)
    wheel = {("jinja2", "3.1.4"): "ab" * 32}
    when = datetime(2026, 11, 1, tzinfo=UTC)
    data = make_image_sbom("admin", "0.1.0", packages, wheel, when, serial=UUID(int=7))
    assert data == make_image_sbom("admin", "0.1.0", packages, wheel, when, serial=UUID(int=7))
    document = json.loads(data)
    assert document["specVersion"] == "1.6"
    by_purl = {c["purl"]: c for c in document["components"]}
    assert set(by_purl) >= {
        "pkg:pypi/jinja2@3.1.4",
        "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64",
        "pkg:golang/golang.org/x/net@v0.20.0",
    }
    jinja = by_purl["pkg:pypi/jinja2@3.1.4"]
    assert jinja["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert jinja["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    assert summarise_image_sbom(data) == {"deb": 2, "golang": 3, "pypi": 3}
    listed = {(p.ecosystem, p.name, p.deb_source) for p in image_sbom_packages(data)}
    assert ("deb", "libssl3", "openssl") in listed
