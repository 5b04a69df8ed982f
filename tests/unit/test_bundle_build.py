"""Building bundles and keys: layout, parts, refusals that leave nothing half-written, CLI."""

from __future__ import annotations

import io
import json
import stat
import tarfile
from pathlib import Path

import pytest

from appliance.bundle.builder import build_bundle
from appliance.bundle.inspect import inspect_bundle
from appliance.bundle.signing import init_keys
from appliance.crypto.keys import load_signer, private_key_path
from appliance.definition import load_definition
from appliance.errors import (
    BuildError,
    DigestMismatchError,
    SigningKeyError,
    UnsafePathError,
)
from appliance.media.reader import DirectoryReader
from appliance.media.verify import TrustAnchor, verify_bundle
from tests.unit.appliance_cli import cli
from tests.unit.bundle_fixtures import NOW, build, make_project, stored

REPO = Path(__file__).resolve().parents[2]


def test_keys_are_p384_private_and_fingerprinted(tmp_path: Path) -> None:
    made = init_keys(tmp_path / "keys", root_threshold=2, root_keys=3, now=NOW)
    names = sorted(p.name for p in (tmp_path / "keys").iterdir())
    assert names == [
        "1.root.json",
        "root-1.pem",
        "root-2.pem",
        "root-3.pem",
        "root.json",
        "snapshot.pem",
        "state.json",
        "targets.pem",
        "timestamp.pem",
    ]
    for pem in (tmp_path / "keys").glob("*.pem"):
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    root = json.loads(made.root_path.read_text())["signed"]
    assert root["roles"]["root"]["threshold"] == 2
    assert {k["scheme"] for k in root["keys"].values()} == {"ecdsa-sha2-nistp384"}
    assert made.fingerprint.startswith("sha256:") and len(made.fingerprint) == 71


def test_encrypted_keys_need_their_passphrase(tmp_path: Path) -> None:
    init_keys(tmp_path / "keys", passphrase=b"correct horse", now=NOW)
    path = private_key_path(tmp_path / "keys", "targets")
    assert b"ENCRYPTED" in path.read_bytes()
    with pytest.raises(SigningKeyError, match="is encrypted and no passphrase was given"):
        load_signer(path, None)
    with pytest.raises(SigningKeyError, match="wrong passphrase"):
        load_signer(path, b"wrong")
    assert load_signer(path, b"correct horse").keyid


def test_readable_key_is_refused(tmp_path: Path) -> None:
    init_keys(tmp_path / "keys", now=NOW)
    path = private_key_path(tmp_path / "keys", "targets")
    path.chmod(0o644)
    with pytest.raises(SigningKeyError, match="is readable by others .*expected 600"):
        load_signer(path, None)


def test_large_targets_are_stored_as_parts(tmp_path: Path) -> None:
    built = build(tmp_path / "p", part_size=4096)
    targets = json.loads((built.bundle / "metadata/targets.json").read_text())["signed"]["targets"]
    whole = targets["files/tiny-model/tiny/model.safetensors"]
    assert whole["length"] == 7000
    assert len(whole["custom"]["parts"]) == 2
    assert not (built.bundle / "targets/sha256" / whole["hashes"]["sha256"]).exists()
    assert max(p.stat().st_size for p in (built.bundle / "targets/sha256").iterdir()) <= 4096
    verify_bundle(
        DirectoryReader(built.bundle), TrustAnchor(fingerprint=built.keys_init.fingerprint), now=NOW
    )

    part = stored(built.bundle, "files/tiny-model/tiny/model.safetensors.part001")
    part.chmod(0o644)
    part.write_bytes(b"x" * part.stat().st_size)
    with pytest.raises(DigestMismatchError, match=r"model.safetensors.part001\): expected"):
        verify_bundle(
            DirectoryReader(built.bundle),
            TrustAnchor(fingerprint=built.keys_init.fingerprint),
            now=NOW,
        )


def test_verify_from_read_only_media(tmp_path: Path) -> None:
    built = build(tmp_path / "ro")
    for path in [built.bundle, *built.bundle.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    result = verify_bundle(
        DirectoryReader(built.bundle), TrustAnchor(fingerprint=built.keys_init.fingerprint), now=NOW
    )
    assert result.verified_files == 14


def test_build_refuses_an_existing_output(tmp_path: Path) -> None:
    built = build(tmp_path / "x")
    with pytest.raises(BuildError, match="already exists"):
        build_bundle(built.definition, built.keys, built.bundle, now=NOW)


def test_missing_image_archive_leaves_nothing(tmp_path: Path) -> None:
    definition = make_project(tmp_path)
    init_keys(tmp_path / "keys", now=NOW)
    (tmp_path / "build/components/router.oci.tar").unlink()
    with pytest.raises(BuildError, match="image archive .*router.oci.tar does not exist"):
        build_bundle(definition, tmp_path / "keys", tmp_path / "out", now=NOW)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    state = json.loads((tmp_path / "keys/state.json").read_text())
    assert state == {"snapshot": 0, "targets": 0, "timestamp": 0}  # nothing was signed


def test_symlink_in_a_component_folder_is_refused(tmp_path: Path) -> None:
    definition = make_project(tmp_path)
    init_keys(tmp_path / "keys", now=NOW)
    (tmp_path / "secret").write_text("private")
    (tmp_path / "build/models/tiny/link").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafePathError, match="link is a symbolic link"):
        build_bundle(definition, tmp_path / "keys", tmp_path / "out", now=NOW)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["symlink", "traversal"])
def test_unsafe_member_in_an_oci_archive(tmp_path: Path, kind: str) -> None:
    definition = make_project(tmp_path)
    init_keys(tmp_path / "keys", now=NOW)
    archive = tmp_path / "build/components/router.oci.tar"
    with tarfile.open(archive, "a") as tar:
        if kind == "symlink":
            info = tarfile.TarInfo("blobs/sha256/evil")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/shadow"
            tar.addfile(info)
        else:
            info = tarfile.TarInfo("../../evil")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    message = "is a link or device" if kind == "symlink" else "unexpected member '../../evil'"
    with pytest.raises(UnsafePathError, match=message):
        build_bundle(definition, tmp_path / "keys", tmp_path / "out", now=NOW)
    assert not (tmp_path / "out").exists()


def test_metadata_versions_grow_across_bundles(tmp_path: Path) -> None:
    first = build(tmp_path / "a")
    second = build(tmp_path / "b", keys=first.keys, version="2026.12.0")
    versions = [
        json.loads((b.bundle / "metadata/targets.json").read_text())["signed"]["version"]
        for b in (first, second)
    ]
    assert versions == [1, 2]


def test_inspect_summarises_without_trusting(tmp_path: Path) -> None:
    built = build(tmp_path / "i")
    summary = inspect_bundle(DirectoryReader(built.bundle))
    assert (summary.name, summary.version) == ("lab", "2026.11.0")
    by_name = {c.name: c for c in summary.components}
    assert by_name["ziti-controller"].image_digest == built.result.images["ziti-controller"]
    assert by_name["tiny-model"].files == 2
    assert summary.sbom == {"ansible": 1, "files": 2, "image": 2, "wheel": 1}
    assert summary.roles["targets"][0] == 1


def test_cli_keys_build_verify_inspect(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = cli("keys", "init", str(keys), "--root-threshold", "2", "--root-keys", "3")
    assert made.returncode == 0, made.stderr
    fingerprint = made.stdout.split("root fingerprint: ")[1].split()[0]
    make_project(tmp_path)
    out = tmp_path / "bundle"
    built = cli(
        "bundle",
        "build",
        str(tmp_path / "bundle.yaml"),
        "--keys",
        str(keys),
        "--out",
        str(out),
        "--no-wheelhouse",
    )
    assert built.returncode == 0, built.stderr
    assert f"bundle lab 2026.11.0 written to {out}" in built.stdout

    ok = cli("bundle", "verify", str(out), "--root-fingerprint", fingerprint)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: bundle lab 2026.11.0 is authentic and intact: 13 files")
    assert len(ok.stdout.strip().splitlines()) == 1

    shown = cli("bundle", "inspect", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "unverified" in shown.stdout and "ziti-router" in shown.stdout

    target = stored(out, "files/tiny-model/tiny/config.json")
    target.chmod(0o644)
    target.write_text('{"hidden_size": 256}')
    bad = cli("bundle", "verify", str(out), "--root-fingerprint", fingerprint)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert f"error: targets/sha256/{target.name} (files/tiny-model/tiny/config.json)" in bad.stderr

    anchorless = cli("bundle", "verify", str(out))
    assert anchorless.returncode == 1
    assert "no trust anchor" in anchorless.stderr


def test_definition_load_of_repository_lab_bundle_has_installer_content() -> None:
    lab = load_definition(REPO / "bundles/lab.yaml")
    assert lab.installer.content == ["roles", "installer"]
    assert any(r.startswith("ansible-core==") for r in lab.installer.requirements)
