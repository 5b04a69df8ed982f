"""Issue 28: upgrade media that carry only what the site lacks.

N+1 changes only the model's weights and is built as a delta against N: it carries those
weights (and the SBOM, which names the version), a site at N installs from it, and a
site at N-1 refuses it before anything else happens, naming the blob it lacks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.bundle.delta import load_base
from appliance.bundle.inspect import inspect_bundle
from appliance.bundle.iso import write_iso
from appliance.bundle.sboms import read_sboms
from appliance.bundle.volumes import write_volumes
from appliance.errors import (
    BuildError,
    DigestMismatchError,
    InstallError,
    MetadataError,
    MissingFileError,
    SignatureError,
    SizeMismatchError,
    UnsafePathError,
)
from appliance.install.content import SiteStore, import_bundle, stage_bundle
from appliance.install.layout import SiteDir
from appliance.install.site_export import export_site_state
from appliance.install.steps import InstallOptions
from appliance.install.upgrade import upgrade
from appliance.media.iso import IsoReader
from appliance.media.layout import BASE_RELEASE, SBOM_TARGET
from appliance.media.reader import DirectoryReader, MediaReader
from appliance.media.verify import TrustAnchor, verify_bundle
from appliance.media.volumes import VolumeReader, VolumeSetReader
from tests.unit.bundle_fixtures import NOW, build, logical_names, stored, tree
from tests.unit.delta_fixtures import Releases, copy_site, make_releases, site_at, verify

MODEL = "files/tiny-model/tiny/model.safetensors"
CONFIG = "files/tiny-model/tiny/config.json"


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("releases"))


@pytest.fixture(scope="module")
def at_n(releases: Releases, tmp_path_factory: pytest.TempPathFactory) -> SiteDir:
    return site_at(releases.fingerprint, releases.n, tmp_path_factory.mktemp("site-n") / "site")


@pytest.fixture(scope="module")
def at_older(releases: Releases, tmp_path_factory: pytest.TempPathFactory) -> SiteDir:
    return site_at(
        releases.fingerprint, releases.older, tmp_path_factory.mktemp("site-older") / "site"
    )


def _blobs(bundle: Path) -> set[str]:
    return {p.name for p in (bundle / "targets/sha256").iterdir()}


def _targets(bundle: Path) -> dict[str, dict[str, object]]:
    raw = json.loads((bundle / "metadata/targets.json").read_text())
    return dict(raw["signed"]["targets"])


def test_a_model_only_delta_carries_the_model_and_the_sbom_only(releases: Releases) -> None:
    delta = releases.delta.bundle
    assert _blobs(delta) == {stored(delta, MODEL).name, stored(delta, SBOM_TARGET).name}
    # The metadata names the whole release, exactly the targets full media name.
    assert logical_names(delta) == logical_names(releases.full.bundle)
    marks = {name: t.get("custom", {}).get(BASE_RELEASE) for name, t in _targets(delta).items()}  # type: ignore[union-attr]
    assert marks[MODEL] is None and marks[SBOM_TARGET] is None
    assert {v for k, v in marks.items() if k not in (MODEL, SBOM_TARGET)} == {"2026.11.0"}
    assert releases.delta.result.left_to_site == len(marks) - 2
    assert releases.delta.result.base == ["2026.11.0"]
    assert (delta / "install.sh").is_file() or "install.sh" not in logical_names(delta)


def test_without_the_site_store_the_left_out_content_is_listed_not_verified(
    releases: Releases,
) -> None:
    result = verify(releases.delta.bundle, releases.fingerprint)
    assert result.verified_files == 2
    assert not result.at_site_verified
    assert {held.logical for held in result.at_site.values()} >= {CONFIG}
    assert {held.release for held in result.at_site.values()} == {"2026.11.0"}


def test_a_site_at_n_installs_from_the_delta(
    releases: Releases, at_n: SiteDir, tmp_path: Path
) -> None:
    site = copy_site(at_n, tmp_path / "site")
    before = _blobs_in(site)
    result = verify(releases.delta.bundle, releases.fingerprint, store=SiteStore(site))
    assert result.at_site_verified
    assert result.verified_bytes == sum(t.length for t in _wholes(result.targets))
    copied, _ = import_bundle(result, DirectoryReader(releases.delta.bundle), site)
    assert copied == 2  # the new weights and the SBOM; the rest was the store's
    assert _blobs_in(site) - before == _blobs(releases.delta.bundle)
    staged = stage_bundle(result, site)
    assert (staged.files["tiny-model"] / "tiny/model.safetensors").read_bytes() == b"newer" * 1000
    assert (staged.files["tiny-model"] / "tiny/config.json").is_file()
    assert set(staged.images) == {"ziti-controller", "ziti-router"}
    # The site keeps the delta's metadata: it names the whole release for the next export.
    kept = site.metadata("2026.12.0") / "targets.json"
    assert kept.read_bytes() == (releases.delta.bundle / "metadata/targets.json").read_bytes()


def test_a_site_at_n_minus_1_refuses_the_delta_naming_the_missing_blob(
    releases: Releases, at_older: SiteDir, tmp_path: Path
) -> None:
    site = copy_site(at_older, tmp_path / "site")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all: {hosts: {}}\n")
    before = tree(site.root)
    said: list[str] = []
    options = InstallOptions([releases.delta.bundle], inventory, site.root)
    with pytest.raises(MissingFileError) as info:
        upgrade(options, said.append)
    config = _targets(releases.delta.bundle)[CONFIG]
    sha = config["hashes"]["sha256"]  # type: ignore[index]
    assert str(info.value).startswith(
        f"{CONFIG} (sha256 {sha}, {config['length']} bytes) of release lab 2026.11.0 is not on "
        f"{releases.delta.bundle} and not in the site store {site.content}: this delta media "
        "is for a site that holds lab 2026.11.0"
    )
    assert info.value.hint is not None and "appliance site state" in info.value.hint
    # Refused before anything: no journal, no new content, only the queued audit event.
    after = tree(site.root)
    assert not (site.journal).exists()
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed == {"lock", "audit-outbox.json"}, changed  # the lock file, the event
    assert "refused" in (site.root / "audit-outbox.json").read_text()


def test_a_store_file_altered_since_import_is_caught_by_the_rehash(
    releases: Releases, at_n: SiteDir, tmp_path: Path
) -> None:
    site = copy_site(at_n, tmp_path / "site")
    victim = site.blob(_targets(releases.delta.bundle)[CONFIG]["hashes"]["sha256"])  # type: ignore[index]
    victim.write_bytes(victim.read_bytes()[:-1] + b"!")
    with pytest.raises(DigestMismatchError, match=f"^{victim} \\({CONFIG}\\): expected sha256"):
        verify(releases.delta.bundle, releases.fingerprint, store=SiteStore(site))
    victim.write_bytes(victim.read_bytes() + b" ")
    with pytest.raises(SizeMismatchError, match="in the site store is 21 bytes, larger than"):
        verify(releases.delta.bundle, releases.fingerprint, store=SiteStore(site))
    victim.unlink()
    victim.symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match="in the site store is a symbolic link"):
        verify(releases.delta.bundle, releases.fingerprint, store=SiteStore(site))


def test_content_not_marked_as_the_sites_must_be_on_the_media(
    releases: Releases, at_n: SiteDir, tmp_path: Path
) -> None:
    copy = tmp_path / "media"
    import shutil

    shutil.copytree(releases.delta.bundle, copy)
    target = stored(copy, MODEL)
    target.chmod(0o644)
    target.unlink()
    # Even though the store could hold such a digest, an unmarked target is required.
    with pytest.raises(MissingFileError, match=f"\\({MODEL}, 5000 bytes\\) is named by"):
        verify(copy, releases.fingerprint, store=SiteStore(at_n))


def test_the_delta_reads_from_an_iso_and_from_volumes(
    releases: Releases, at_n: SiteDir, tmp_path: Path
) -> None:
    write_iso(releases.delta.bundle, tmp_path / "delta.iso", volume_id="lab")
    folders = write_volumes(releases.delta.bundle, tmp_path / "vols", volume_size=17 * 2**10)
    assert len(folders) == 2  # the weights on one, the SBOM on the other
    readers: list[MediaReader] = [IsoReader(tmp_path / "delta.iso"), VolumeSetReader(folders)]
    for reader in readers:
        result = verify_bundle(
            reader, TrustAnchor(fingerprint=releases.fingerprint), now=NOW, store=SiteStore(at_n)
        )
        assert result.at_site_verified, reader.description
    one = verify_bundle(
        VolumeReader(folders[0]),
        TrustAnchor(fingerprint=releases.fingerprint),
        now=NOW,
        partial=True,
    )
    assert one.verified_files == 1 and not one.at_site


def test_inspect_says_what_is_carried_and_what_the_site_must_hold(releases: Releases) -> None:
    summary = inspect_bundle(DirectoryReader(releases.delta.bundle))
    carried = sum(p.stat().st_size for p in (releases.delta.bundle / "targets/sha256").iterdir())
    assert (summary.carried_files, summary.carried_bytes) == (2, carried)
    count, size = summary.at_site["2026.11.0"]
    assert count == releases.delta.result.left_to_site
    assert size == releases.delta.result.left_to_site_bytes
    components = {c.name: c for c in summary.components}
    assert components["ziti-router"].at_site == "2026.11.0"
    assert components["tiny-model"].at_site is None  # its weights are carried
    sboms = read_sboms(
        DirectoryReader(releases.delta.bundle),
        verify(releases.delta.bundle, releases.fingerprint).targets,
    )
    assert SBOM_TARGET in sboms


def test_a_mark_added_by_hand_fails_the_signature_check(releases: Releases, tmp_path: Path) -> None:
    """Marking the new weights as the site's (to slip other content in) breaks the
    signed metadata: the marks are part of what the targets key signed."""
    import shutil

    copy = tmp_path / "media"
    shutil.copytree(releases.delta.bundle, copy)
    path = copy / "metadata/targets.json"
    path.chmod(0o644)
    raw = json.loads(path.read_text())
    raw["signed"]["targets"][MODEL]["custom"][BASE_RELEASE] = "2026.11.0"
    path.write_text(json.dumps(raw, indent=1))
    stored(copy, MODEL).chmod(0o644)
    stored(copy, MODEL).unlink()
    with pytest.raises(MetadataError, match="targets.json .* but snapshot.json expects"):
        verify(copy, releases.fingerprint)


# -- the base: a bundle, its metadata, or a site's export -------------------------------


def test_a_sites_export_builds_the_same_delta(
    releases: Releases, at_n: SiteDir, tmp_path: Path
) -> None:
    out = tmp_path / "site-state.json"
    summary = export_site_state(at_n.root, out)
    assert (summary.bundle, summary.installed, list(summary.releases)) == (
        "lab",
        "2026.11.0",
        ["2026.11.0"],
    )
    assert b"PRIVATE" not in out.read_bytes()
    from_export = load_base(out, releases.n.keys)
    from_bundle = load_base(releases.n.bundle, releases.n.keys)
    from_metadata = load_base(releases.n.bundle / "metadata/targets.json", releases.n.keys)
    assert from_export.held == from_bundle.held == from_metadata.held
    assert from_export.releases == ["2026.11.0"]


def test_a_tampered_export_is_refused_at_build_time(
    releases: Releases, at_n: SiteDir, tmp_path: Path
) -> None:
    out = tmp_path / "site-state.json"
    export_site_state(at_n.root, out)
    raw = json.loads(out.read_text())
    targets = raw["releases"]["2026.11.0"]["signed"]["targets"]
    targets[MODEL]["hashes"]["sha256"] = "0" * 64  # claim a blob the vendor never signed
    out.write_text(json.dumps(raw))
    with pytest.raises(
        SignatureError,
        match="release 2026.11.0's targets.json is not signed by a targets key of the "
        "vendor's roots",
    ) as info:
        load_base(out, releases.n.keys)
    assert info.value.hint is not None

    raw = json.loads(out.read_text())
    raw["root"]["signed"]["version"] = 7
    out.write_text(json.dumps(raw))
    with pytest.raises(SignatureError, match="the root the site trusts is none of the"):
        load_base(out, releases.n.keys)

    out.write_text('{"format": "something-else/1"}')
    with pytest.raises(MetadataError, match="expected format 'appliance-site-state/1'"):
        load_base(out, releases.n.keys)


@pytest.mark.parametrize("text", ['{"bad": 1}', "[1, 2]", '{"signed": 3}', "not json"])
def test_a_since_file_that_is_no_metadata_is_refused_with_what_to_pass(
    releases: Releases, tmp_path: Path, text: str
) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(text)
    with pytest.raises(MetadataError) as refused:
        load_base(wrong, releases.n.keys)
    assert str(wrong) in str(refused.value) and "site state" in (refused.value.hint or "")


def test_a_base_signed_by_other_keys_is_refused(releases: Releases, tmp_path: Path) -> None:
    stranger = build(tmp_path / "stranger", version="2026.9.0")
    with pytest.raises(SignatureError, match="is not signed by a targets key"):
        load_base(stranger.bundle, releases.n.keys)


def test_a_base_not_older_than_the_build_is_refused(releases: Releases, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="holds lab 2026.12.0, not older than this build's"):
        build(
            tmp_path / "again",
            keys=releases.n.keys,
            version="2026.12.0",
            since=releases.full.bundle,
        )


def test_export_of_a_site_with_nothing_installed_says_so(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="holds no trusted root"):
        export_site_state(tmp_path / "empty", tmp_path / "out.json")


def _blobs_in(site: SiteDir) -> set[str]:
    return {p.name for p in site.content.iterdir()}


def _wholes(targets: dict[str, object]) -> list:  # type: ignore[type-arg]
    return [
        t
        for t in targets.values()
        if not (t.custom or {}).get("part_of")  # type: ignore[attr-defined]
    ]


# -- the commands -----------------------------------------------------------------------


def test_the_commands_export_build_and_inspect_a_delta(
    releases: Releases, at_n: SiteDir, tmp_path: Path
) -> None:
    from tests.unit.appliance_cli import cli

    state = tmp_path / "site-state.json"
    exported = cli("site", "state", "--out", str(state), "--site-dir", str(at_n.root))
    assert exported.returncode == 0, exported.stderr
    assert "installed 2026.11.0" in exported.stdout and "holds 2026.11.0 whole" in exported.stdout

    definition = str(releases.delta.root / "bundle.yaml")
    keys = str(releases.n.keys)
    out = tmp_path / "delta"
    built = cli(
        "bundle", "build", definition, "--keys", keys, "--out", str(out),
        "--since", str(state), "--no-wheelhouse",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "delta against lab 2026.11.0: carries" in built.stdout
    assert "to the site's store" in built.stdout

    shown = cli("bundle", "inspect", str(out), env={"COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    assert "expected at the site (the store of a site that holds lab 2026.11.0)" in shown.stdout
    assert "at the site (2026.11.0)" in shown.stdout

    raw = json.loads(state.read_text())
    raw["releases"]["2026.11.0"]["signed"]["targets"][MODEL]["length"] = 1
    state.write_text(json.dumps(raw))
    refused = cli(
        "bundle", "build", definition, "--keys", keys, "--out", str(tmp_path / "x"),
        "--since", str(state), "--no-wheelhouse",
    )  # fmt: skip
    assert refused.returncode == 1
    assert "is not signed by a targets key of the vendor's roots" in refused.stderr
    assert "what to do:" in refused.stderr
    assert not (tmp_path / "x").exists()
