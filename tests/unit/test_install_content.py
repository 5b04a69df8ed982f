"""Importing a verified bundle into the site store and staging it: only verified bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import DigestMismatchError
from appliance.install.content import import_bundle, stage_bundle
from appliance.install.layout import SiteDir
from appliance.media.reader import DirectoryReader
from appliance.media.verify import TrustAnchor, verify_bundle
from tests.unit.bundle_fixtures import NOW, build, stored


def _verified(tmp_path: Path, part_size: int = 2**30):  # type: ignore[no-untyped-def]
    built = build(tmp_path / "vendor", part_size=part_size)
    bundle = verify_bundle(
        DirectoryReader(built.bundle),
        TrustAnchor(fingerprint=built.result.root_fingerprint),
        now=NOW,
    )
    return built, bundle


def test_import_then_stage_gives_each_image_its_own_oci_layout(tmp_path: Path) -> None:
    built, bundle = _verified(tmp_path)
    site = SiteDir(tmp_path / "site")
    copied, _ = import_bundle(bundle, DirectoryReader(built.bundle), site)
    assert copied > 0
    staged = stage_bundle(bundle, site)
    assert set(staged.images) == {"ziti-controller", "ziti-router"}
    for image in staged.images.values():
        index = json.loads((image.path / "index.json").read_text())
        manifest_hex = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.loads((image.path / "blobs/sha256" / manifest_hex).read_text())
        assert manifest["config"]["digest"] == f"sha256:{image.image_id}"
        expected = {manifest_hex, image.image_id} | {
            layer["digest"].removeprefix("sha256:") for layer in manifest["layers"]
        }
        assert {p.name for p in (image.path / "blobs/sha256").iterdir()} == expected
        assert (image.path / "oci-layout").is_file()
    assert (staged.files["tiny-model"] / "tiny/model.safetensors").is_file()
    assert (staged.ansible / "roles/fips/tasks/main.yml").is_file()
    variables = staged.extravars()
    assert variables["appliance_components"]["tiny-model"] == "1"
    assert variables["appliance_images_catalog"]["ziti-router"]["id"] == (
        staged.images["ziti-router"].image_id
    )
    # A rerun copies nothing: the store already holds every target.
    assert import_bundle(bundle, DirectoryReader(built.bundle), site) == (0, 0)


def test_a_large_file_stored_as_parts_is_kept_whole(tmp_path: Path) -> None:
    built, bundle = _verified(tmp_path, part_size=2000)
    site = SiteDir(tmp_path / "site")
    import_bundle(bundle, DirectoryReader(built.bundle), site)
    staged = stage_bundle(bundle, site)
    model = staged.files["tiny-model"] / "tiny/model.safetensors"
    assert model.read_bytes() == b"weights" * 1000
    # Parts are not kept beside the whole.
    whole = bundle.targets["files/tiny-model/tiny/model.safetensors"]
    assert (whole.custom or {}).get("parts")
    parts = whole.custom["parts"]  # type: ignore[index]
    assert len(parts) > 1
    assert not any(site.blob(sha).exists() for sha in parts)


def test_content_changed_after_verification_is_refused_and_not_kept(tmp_path: Path) -> None:
    built, bundle = _verified(tmp_path)
    victim = stored(built.bundle, "files/tiny-model/tiny/config.json")
    victim.chmod(0o644)
    victim.write_bytes(b'{"hidden_size": 999}')
    site = SiteDir(tmp_path / "site")
    with pytest.raises(DigestMismatchError, match="changed on .* after it was verified"):
        import_bundle(bundle, DirectoryReader(built.bundle), site)
    sha = bundle.targets["files/tiny-model/tiny/config.json"].hashes["sha256"]
    assert not site.blob(sha).exists()
    assert not [p for p in site.content.iterdir() if p.name.startswith(".")]  # no temp left
