"""One test per attack on a bundle: each asserts the exact error and that nothing was written.

The bundles are real (python-tuf metadata, P-384 signatures, OCI archives with shared
layers); only their size is small. Every attack runs on full media and on delta media
(issue 28: the same release built against an older one, verified with the store of a
site that holds it): content a delta leaves out is attacked where it then lives, in the
site's store.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer

from appliance.bundle.signing import init_keys
from appliance.crypto.keys import load_signer, private_key_path
from appliance.errors import (
    BundleError,
    DigestMismatchError,
    ExpiredMetadataError,
    MetadataError,
    MissingFileError,
    RollbackError,
    SignatureError,
    SizeMismatchError,
    UnexpectedFileError,
    UnsafePathError,
)
from appliance.install.content import SiteStore
from appliance.install.layout import SiteDir
from appliance.media.reader import DirectoryReader
from appliance.media.site_state import Installed, SiteState
from appliance.media.verify import TrustAnchor, VerifiedBundle, verify_bundle
from tests.unit.bundle_fixtures import NOW, SHARED_LAYER, Built, build, stored, tree
from tests.unit.delta_fixtures import copy_site, site_at

#: The site store each delta media copy is verified with (full media: none).
STORES: dict[Path, SiteDir] = {}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="module", params=["full", "delta"])
def pristine(
    request: pytest.FixtureRequest, full: Built, tmp_path_factory: pytest.TempPathFactory
) -> Built:
    """The same release (lab 2026.11.0) as full media, and as delta media against an
    older release whose model (weights and config) differs, with a site that holds it."""
    if request.param == "full":
        return full
    root = tmp_path_factory.mktemp("delta")
    base = build(root / "base", version="2026.10.0", model_text=b"older", hidden_size=64)
    delta = build(root / "media", keys=base.keys, since=base.bundle)
    delta.keys_init = base.keys_init
    STORES[delta.bundle] = site_at(base.keys_init.fingerprint, base, root / "site")
    return delta


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Another bundle from other keys, for swaps and mix-and-match."""
    return build(tmp_path_factory.mktemp("other"), model_text=b"WEIGHTS")


@pytest.fixture
def bundle(pristine: Built, tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the pristine bundle (and, for a delta, of the site's store) to
    attack; the test checks nothing else changed."""
    copy = tmp_path / "media"
    shutil.copytree(pristine.bundle, copy)
    for path in copy.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    if pristine.bundle in STORES:
        STORES[copy] = copy_site(STORES[pristine.bundle], tmp_path / "site")
    yield copy
    STORES.pop(copy, None)


def verify(path: Path, fingerprint: str, **kwargs: object) -> VerifiedBundle:
    """Verify (delta media with their site's store) and prove nothing was written."""
    site = STORES.get(path)
    before = tree(path.parent)
    try:
        return verify_bundle(
            DirectoryReader(path),
            TrustAnchor(fingerprint=fingerprint),
            now=kwargs.pop("now", NOW),
            store=SiteStore(site) if site is not None else None,
            **kwargs,
        )  # type: ignore[arg-type]
    finally:
        assert tree(path.parent) == before, "the verifier must write nothing"


def content(bundle: Path, logical: str) -> tuple[Path, str]:
    """Where a target's content lies (the media, or the site's store for what a delta
    leaves out), and how the verifier names that file."""
    on_media = stored(bundle, logical)
    if on_media.exists() or bundle not in STORES:
        return on_media, f"targets/sha256/{on_media.name}"
    in_store = STORES[bundle].blob(on_media.name)
    return in_store, str(in_store)


def flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def edit_json_signed(path: Path) -> None:
    """Change one byte inside the signed part, keeping the JSON valid."""
    text = path.read_text()
    year = text.index('"expires": "20') + len('"expires": "20')
    digit = text[year + 1]
    path.write_text(text[: year + 1] + str((int(digit) + 1) % 10) + text[year + 2 :])


def test_pristine_bundle_verifies(pristine: Built, bundle: Path) -> None:
    result = verify(bundle, pristine.keys_init.fingerprint)
    assert (result.name, result.version) == ("lab", "2026.11.0")
    # 2 image indexes, 7 distinct blobs (the shared layer once), 2 model files, 1 wheel,
    # 1 role file, the SBOM: on the media, or (a delta) in the site's store.
    on_media = len(list((pristine.bundle / "targets/sha256").iterdir()))
    assert result.verified_files == on_media
    assert on_media + len(result.at_site) == 14
    assert on_media == (14 if bundle not in STORES else 3)  # the delta: the model, the SBOM
    assert result.at_site_verified == (bundle in STORES)
    assert result.root_fingerprint == pristine.keys_init.fingerprint


def test_shared_layer_is_stored_once(full: Built) -> None:
    import hashlib

    digest = hashlib.sha256(SHARED_LAYER).hexdigest()
    blobs = [p.name for p in (full.bundle / "targets/sha256").iterdir()]
    assert blobs.count(digest) == 1
    for image in ("ziti-controller", "ziti-router"):
        index = json.loads(stored(full.bundle, f"images/{image}/index.json").read_bytes())
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.loads(stored(full.bundle, f"blobs/sha256/{manifest_digest}").read_bytes())
        assert f"sha256:{digest}" in [layer["digest"] for layer in manifest["layers"]]


@pytest.mark.parametrize(
    "logical",
    [
        "files/tiny-model/tiny/model.safetensors",
        "installer/wheels/appliance-0.1.0-py3-none-any.whl",
        "sbom.cdx.json",
        "installer/ansible/roles/fips/tasks/main.yml",
    ],
)
def test_changed_byte_in_content(bundle: Path, pristine: Built, logical: str) -> None:
    target, named = content(bundle, logical)
    flip_byte(target)
    with pytest.raises(DigestMismatchError) as info:
        verify(bundle, pristine.keys_init.fingerprint)
    assert str(info.value).startswith(f"{named} ({logical}): expected sha256 {target.name}, found ")


def test_changed_byte_in_a_layer(bundle: Path, pristine: Built) -> None:
    import hashlib

    layer = hashlib.sha256(SHARED_LAYER).hexdigest()
    target, _named = content(bundle, f"blobs/sha256/{layer}")
    flip_byte(target, offset=600)
    with pytest.raises(DigestMismatchError, match=f"blobs/sha256/{layer}\\): expected sha256"):
        verify(bundle, pristine.keys_init.fingerprint)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("root.json", MetadataError, "metadata/root.json differs from the newest root"),
        (
            "1.root.json",
            SignatureError,
            r"metadata/1.root.json: expected signatures by the threshold of its own root keys",
        ),
        (
            "timestamp.json",
            SignatureError,
            r"metadata/timestamp.json: expected 1 valid signature\(s\) by the timestamp key",
        ),
        (
            "snapshot.json",
            MetadataError,
            "metadata/snapshot.json has sha256 .*, but timestamp.json expects .*: metadata from "
            "different bundles cannot be mixed",
        ),
        (
            "targets.json",
            MetadataError,
            "metadata/targets.json has sha256 .*, but snapshot.json expects",
        ),
    ],
)
def test_changed_byte_in_each_metadata_file(
    bundle: Path, pristine: Built, name: str, error: type[BundleError], message: str
) -> None:
    edit_json_signed(bundle / "metadata" / name)
    with pytest.raises(error, match=message):
        verify(bundle, pristine.keys_init.fingerprint)


def test_root_with_a_bad_signature_given_as_the_anchor(bundle: Path, pristine: Built) -> None:
    edit_json_signed(bundle / "metadata/1.root.json")
    with pytest.raises(SignatureError, match="1.root.json: expected signatures by the threshold"):
        verify_bundle(
            DirectoryReader(bundle),
            TrustAnchor(root=pristine.keys_init.root_path.read_bytes()),
            now=NOW,
        )


def test_missing_file(bundle: Path, pristine: Built) -> None:
    target = stored(bundle, "files/tiny-model/tiny/config.json")
    target.unlink()
    with pytest.raises(MissingFileError) as info:
        verify(bundle, pristine.keys_init.fingerprint)
    assert str(info.value).startswith(
        f"targets/sha256/{target.name} (files/tiny-model/tiny/config.json, 20 bytes) is named "
        "by targets.json but is not on "
    )


def test_extra_file(bundle: Path, pristine: Built) -> None:
    (bundle / "targets/sha256/README").write_text("hello")
    with pytest.raises(
        UnexpectedFileError,
        match="^targets/sha256/README is on the media but not named by the signed metadata",
    ):
        verify(bundle, pristine.keys_init.fingerprint)


def test_extra_metadata_file(bundle: Path, pristine: Built) -> None:
    (bundle / "metadata/delegated.json").write_text("{}")
    with pytest.raises(UnexpectedFileError, match="^metadata/delegated.json is on the media"):
        verify(bundle, pristine.keys_init.fingerprint)


def test_renamed_file(bundle: Path, pristine: Built) -> None:
    target = stored(bundle, "files/tiny-model/tiny/config.json")
    target.rename(target.with_name("0" * 64))
    with pytest.raises(UnexpectedFileError, match=f"^targets/sha256/{'0' * 64} is on the media"):
        verify(bundle, pristine.keys_init.fingerprint)


def test_file_swapped_in_from_another_bundle(bundle: Path, pristine: Built, other: Built) -> None:
    ours = stored(bundle, "files/tiny-model/tiny/model.safetensors")
    theirs = stored(other.bundle, "files/tiny-model/tiny/model.safetensors")
    assert ours.stat().st_size == theirs.stat().st_size
    ours.write_bytes(theirs.read_bytes())  # same length, other content
    with pytest.raises(
        DigestMismatchError, match=f"expected sha256 {ours.name}, found {theirs.name}"
    ):
        verify(bundle, pristine.keys_init.fingerprint)


def test_mix_and_match_metadata(bundle: Path, pristine: Built, other: Built) -> None:
    shutil.copy(other.bundle / "metadata/targets.json", bundle / "metadata/targets.json")
    with pytest.raises(MetadataError, match="targets.json .* but snapshot.json expects"):
        verify(bundle, pristine.keys_init.fingerprint)


def test_metadata_signed_by_a_wrong_key(bundle: Path, pristine: Built, other: Built) -> None:
    path = bundle / "metadata/timestamp.json"
    metadata = Metadata.from_bytes(path.read_bytes())
    metadata.signatures.clear()
    metadata.sign(load_signer(private_key_path(other.keys, "timestamp"), None).signer)
    path.write_bytes(metadata.to_bytes(JSONSerializer(compact=False)))
    with pytest.raises(
        SignatureError,
        match=r"timestamp.json: expected 1 valid signature\(s\) "
        r"by the timestamp key\(s\) .* found 0 \(signed by ",
    ):
        verify(bundle, pristine.keys_init.fingerprint)


def test_root_threshold_not_met(tmp_path: Path) -> None:
    built = build(tmp_path / "t", root_threshold=2, root_keys=3)
    for name in ("1.root.json", "root.json"):
        path = built.bundle / "metadata" / name
        path.chmod(0o644)
        metadata = Metadata.from_bytes(path.read_bytes())
        keep = next(iter(metadata.signatures))
        metadata.signatures = {keep: metadata.signatures[keep]}
        path.write_bytes(metadata.to_bytes(JSONSerializer(compact=False)))
    weak_root = (built.bundle / "metadata/root.json").read_bytes()
    with pytest.raises(
        SignatureError,
        match=r"1.root.json: expected signatures by the threshold "
        r"of its own root keys \(threshold 2\); not met",
    ):
        verify_bundle(DirectoryReader(built.bundle), TrustAnchor(root=weak_root), now=NOW)


def test_expired_metadata(bundle: Path, pristine: Built) -> None:
    with pytest.raises(ExpiredMetadataError) as info:
        verify(bundle, pristine.keys_init.fingerprint, now=NOW + timedelta(days=121))
    assert str(info.value) == (
        "metadata/timestamp.json expired at 2027-03-22T12:00:00+00:00 "
        "(now 2027-03-23T12:00:00+00:00)"
    )
    assert info.value.hint is not None


def site(pristine: Built, version: str, targets_sha256: str = "x" * 64) -> SiteState:
    return SiteState(
        pristine.keys_init.root_path.read_bytes(),
        Installed("lab", version, targets_sha256, {"timestamp": 0, "snapshot": 0, "targets": 0}),
    )


def test_rollback_to_an_older_bundle(bundle: Path, pristine: Built) -> None:
    with pytest.raises(
        RollbackError, match="^bundle lab 2026.11.0 is not newer than the installed 2026.12.0$"
    ):
        verify(bundle, pristine.keys_init.fingerprint, site=site(pristine, "2026.12.0"))


def test_same_version_replayed_with_different_content(bundle: Path, pristine: Built) -> None:
    with pytest.raises(
        RollbackError,
        match="bundle lab 2026.11.0 is already installed with "
        "different content .*: a replayed version is refused",
    ):
        verify(bundle, pristine.keys_init.fingerprint, site=site(pristine, "2026.11.0"))


def test_newer_bundle_passes_the_site_check(bundle: Path, pristine: Built) -> None:
    result = verify(bundle, pristine.keys_init.fingerprint, site=site(pristine, "2026.10.3"))
    assert result.version == "2026.11.0"


def test_bundle_from_other_keys_does_not_chain_to_the_site_root(
    pristine: Built, other: Built
) -> None:
    with pytest.raises(SignatureError, match="does not chain to the root this site trusts"):
        verify_bundle(
            DirectoryReader(other.bundle),
            TrustAnchor(fingerprint="sha256:x"),
            site=site(pristine, "2026.10.0"),
            now=NOW,
        )


def test_file_larger_than_its_metadata_says(bundle: Path, pristine: Built) -> None:
    target = stored(bundle, "files/tiny-model/tiny/config.json")
    with target.open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(
        SizeMismatchError,
        match=f"^targets/sha256/{target.name} "
        r"\(files/tiny-model/tiny/config.json\) is 21 bytes, larger than the 20 "
        "bytes targets.json says$",
    ):
        verify(bundle, pristine.keys_init.fingerprint)


def test_symlink_on_the_media(bundle: Path, pristine: Built, tmp_path: Path) -> None:
    target = stored(bundle, "files/tiny-model/tiny/config.json")
    outside = tmp_path / "outside"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(
        UnsafePathError, match=f"targets/sha256/{target.name} on .* is a symbolic link"
    ):
        verify(bundle, pristine.keys_init.fingerprint)


def test_signed_target_path_that_escapes(tmp_path: Path) -> None:
    """Even correctly signed metadata cannot name a path outside the bundle."""
    built = build(tmp_path / "t")
    keys = built.keys
    path = built.bundle / "metadata/targets.json"
    metadata = Metadata.from_bytes(path.read_bytes())
    target = metadata.signed.targets.pop("sbom.cdx.json")
    target.path = "../../etc/passwd"
    metadata.signed.targets[target.path] = target
    from appliance.bundle.signing import sign_bundle

    signed = sign_bundle(
        keys, dict(metadata.signed.targets), bundle={"name": "lab", "version": "2026.11.0"}, now=NOW
    )
    for name, data in signed.files.items():
        (built.bundle / "metadata" / name).chmod(0o644)
        (built.bundle / "metadata" / name).write_bytes(data)
    with pytest.raises(UnsafePathError, match="unsafe target path '../../etc/passwd'"):
        verify_bundle(
            DirectoryReader(built.bundle),
            TrustAnchor(fingerprint=built.keys_init.fingerprint),
            now=NOW,
        )


def test_no_trust_anchor_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        TrustAnchor()


def test_keys_init_refuses_a_used_folder(tmp_path: Path) -> None:
    init_keys(tmp_path / "k", now=NOW)
    from appliance.errors import SigningKeyError

    with pytest.raises(SigningKeyError, match="is not empty: refusing to overwrite"):
        init_keys(tmp_path / "k", now=NOW)
