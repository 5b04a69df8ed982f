"""Splitting a bundle into volumes and reading the set back; `appliance media write`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.bundle.iso import write_iso
from appliance.bundle.volumes import copy_bundle, parse_size, write_volumes
from appliance.errors import MediaError
from appliance.media.iso import IsoReader
from appliance.media.reader import DirectoryReader, Entry, MediaReader
from appliance.media.verify import TrustAnchor, verify_bundle
from appliance.media.volumes import VolumeReader, VolumeSetReader
from tests.unit.bundle_fixtures import NOW, build
from tests.unit.fake_bundle_tree import LARGE, METADATA, content, make_bundle, tree_bytes

REPO = Path(__file__).resolve().parents[2]
KB = 1000
MB = 1000 * KB
# A few small targets, a 3 MiB one and some of 1 to 2 MB: several volumes of 3.2 MB.
SIZES = (3 * KB, 5 * KB, 7 * KB, 11 * KB, 13 * KB, 17 * KB, LARGE, 2 * MB, 1500 * KB, MB, 2 * KB, 0)
VOLUME = LARGE + 20 * KB
METADATA_BYTES = sum(len(data) for data in METADATA.values())


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle", SIZES)


def hexes(root: Path) -> set[str]:
    return {p.name for p in (root / "targets/sha256").iterdir()}


def disk_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def merged(reader: MediaReader) -> list[Entry]:
    return sorted(reader.entries(), key=lambda e: e.path)


def read_everything(reader: MediaReader) -> dict[str, bytes]:
    out = {}
    for entry in reader.entries():
        if entry.kind == "file":
            with reader.open(entry.path) as handle:
                out[entry.path] = handle.read()
    return out


# -- sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4.7G", 4_700_000_000),
        ("4GiB", 4 * 2**30),
        ("700M", 700_000_000),
        ("123456", 123_456),
        ("1.5KiB", 1536),
        ("25GB", 25_000_000_000),
        ("2 mib", 2 * 2**20),
        ("1T", 10**12),
        ("512b", 512),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a number with an optional unit"),
        ("G", "expected a number with an optional unit"),
        ("-1G", "expected a number with an optional unit"),
        ("1.2.3G", "expected a number with an optional unit"),
        ("4,7G", "expected a number with an optional unit"),
        ("4.7X", "unknown unit 'X'"),
        ("4 GiBs", "unknown unit 'GiBs'"),
        ("0", "expected at least one byte"),
        ("0.1", "expected at least one byte"),
    ],
)
def test_parse_size_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_size(text)
    assert repr(text) in str(caught.value)


# -- writing volumes --------------------------------------------------------------------


def test_volumes_stay_under_the_size_and_hold_every_target_once(
    bundle: Path, tmp_path: Path
) -> None:
    volume_size = VOLUME
    volumes = write_volumes(bundle, tmp_path / "out", volume_size=volume_size)
    assert [v.name for v in volumes] == ["vol01", "vol02", "vol03"]
    assert sorted((tmp_path / "out").iterdir()) == volumes
    seen: dict[str, str] = {}
    for number, volume in enumerate(volumes, 1):
        assert disk_size(volume) <= volume_size
        assert tree_bytes(volume / "metadata") == tree_bytes(bundle / "metadata")
        record = json.loads((volume / "VOLUME.json").read_bytes())
        assert record == {
            "volume": number,
            "volumes": 3,
            "targets": sorted(hexes(volume)),
            "bundle_metadata_sha256": hashlib.sha256(METADATA["targets.json"]).hexdigest(),
        }
        for hex_ in hexes(volume):
            assert hex_ not in seen, f"{hex_} on {seen.get(hex_)} and {volume.name}"
            seen[hex_] = volume.name
            assert (volume / "targets/sha256" / hex_).read_bytes() == (
                bundle / "targets/sha256" / hex_
            ).read_bytes()
        assert {p.name for p in volume.iterdir()} == {"metadata", "targets", "VOLUME.json"}
    assert set(seen) == hexes(bundle)
    # first-fit decreasing: largest first, each into the first volume with room
    assert [
        sorted(p.stat().st_size for p in (v / "targets/sha256").iterdir()) for v in volumes
    ] == [
        [0, 2 * KB, 17 * KB, LARGE],
        [3 * KB, 5 * KB, 7 * KB, 11 * KB, 13 * KB, MB, 2 * MB],
        [1500 * KB],
    ]


def test_first_fit_decreasing_packs_tightly(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", (60 * KB, 40 * KB, 60 * KB, 40 * KB))
    room = 100 * KB + METADATA_BYTES + 1000  # two targets and the metadata per volume
    volumes = write_volumes(bundle, tmp_path / "out", volume_size=room)
    assert len(volumes) == 2
    assert [
        sorted(p.stat().st_size for p in (v / "targets/sha256").iterdir()) for v in volumes
    ] == [
        [40 * KB, 60 * KB],
        [40 * KB, 60 * KB],
    ]


def test_everything_fits_in_one_volume(bundle: Path, tmp_path: Path) -> None:
    volumes = write_volumes(bundle, tmp_path / "out", volume_size=parse_size("4.7G"))
    assert [v.name for v in volumes] == ["vol01"]
    assert hexes(volumes[0]) == hexes(bundle)


def test_target_too_large_for_a_volume_is_refused(bundle: Path, tmp_path: Path) -> None:
    large = hashlib.sha256(content(6, LARGE)).hexdigest()
    with pytest.raises(MediaError) as caught:
        write_volumes(bundle, tmp_path / "out", volume_size=2 * 2**20)
    message = str(caught.value)
    assert f"targets/sha256/{large}" in message
    assert f"is {LARGE} bytes" in message
    assert f"metadata/ ({METADATA_BYTES} bytes)" in message
    assert "more than the volume size 2097152" in message
    assert list(tmp_path.iterdir()) == [bundle]  # no out folder, no temporary sibling


def test_metadata_alone_too_large_is_refused(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"metadata/ of .* alone needs \d+ bytes"):
        write_volumes(bundle, tmp_path / "out", volume_size=100)


def test_existing_folder_with_content_is_not_touched(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MediaError, match="already exists and is not empty"):
        write_volumes(bundle, out, volume_size=LARGE * 2)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_failed_run_leaves_no_partial_set(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import appliance.bundle.volumes as volumes_module

    real = volumes_module._write_dir_volume
    calls: list[Path] = []

    def fail_on_second(*args: Any) -> None:
        calls.append(args[-1])
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(*args)

    monkeypatch.setattr(volumes_module, "_write_dir_volume", fail_on_second)
    with pytest.raises(OSError, match="No space left"):
        write_volumes(bundle, tmp_path / "out", volume_size=LARGE + 20 * KB)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == [bundle]


def test_bundle_with_a_stray_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    (bundle / "notes.txt").write_text("not part of a bundle")
    with pytest.raises(MediaError, match=r"notes.txt in .* is neither metadata nor a target"):
        write_volumes(bundle, tmp_path / "out", volume_size=LARGE * 2)
    assert not (tmp_path / "out").exists()


def test_bundle_with_a_symlink_is_refused(bundle: Path, tmp_path: Path) -> None:
    (bundle / "metadata/link.json").symlink_to(bundle / "metadata/root.json")
    with pytest.raises(MediaError, match=r"metadata/link.json in .* is a symbolic link"):
        write_volumes(bundle, tmp_path / "out", volume_size=LARGE * 2)
    assert not (tmp_path / "out").exists()


# -- reading volumes --------------------------------------------------------------------


@pytest.fixture
def volumes(bundle: Path, tmp_path: Path) -> list[Path]:
    return write_volumes(bundle, tmp_path / "out", volume_size=VOLUME)


def test_volume_reader_hides_volume_json(volumes: list[Path]) -> None:
    reader = VolumeReader(volumes[1])
    assert (reader.volume, reader.volumes) == (2, 3)
    assert set(reader.targets) == hexes(volumes[1])
    paths = {e.path for e in reader.entries()}
    assert "VOLUME.json" not in paths
    assert "metadata/targets.json" in paths
    with pytest.raises(MediaError, match="VOLUME.json on .* is not part of the bundle"):
        reader.open("VOLUME.json")


def test_set_reads_as_the_original_bundle(bundle: Path, volumes: list[Path]) -> None:
    with VolumeSetReader(list(reversed(volumes))) as reader:  # any order
        assert merged(reader) == merged(DirectoryReader(bundle))
        assert read_everything(reader) == tree_bytes(bundle)
        assert reader.description.startswith("volume set of 3 (")
        with pytest.raises(MediaError, match="VOLUME.json .* not on any volume"):
            reader.open("VOLUME.json")


def test_missing_volume_is_named(volumes: list[Path]) -> None:
    with pytest.raises(MediaError, match=r"volume 2 of 3 is missing \(given: 1 \(.*vol01\), 3"):
        VolumeSetReader([volumes[0], volumes[2]])


def test_duplicated_volume_is_named(volumes: list[Path], tmp_path: Path) -> None:
    copy = tmp_path / "second-copy-of-vol01"
    shutil.copytree(volumes[0], copy)
    with pytest.raises(MediaError, match=r"volume 1 was given 2 times \(.*vol01, .*second-copy"):
        VolumeSetReader([*volumes, copy])


def test_volumes_that_disagree_on_the_count_are_refused(volumes: list[Path]) -> None:
    record_path = volumes[2] / "VOLUME.json"
    record = json.loads(record_path.read_text())
    record["volumes"] = 4
    record_path.write_text(json.dumps(record))
    with pytest.raises(MediaError, match=r"says 3 volumes, .*vol03 says 4"):
        VolumeSetReader(volumes)


def test_metadata_differing_on_one_volume_is_named(volumes: list[Path]) -> None:
    snapshot = volumes[1] / "metadata/snapshot.json"
    data = bytearray(snapshot.read_bytes())
    data[5] ^= 1  # same size, one bit changed
    snapshot.write_bytes(bytes(data))
    with pytest.raises(
        MediaError, match=r"metadata/snapshot.json on volume 2 \(.*vol02\) differs from volume 1"
    ):
        VolumeSetReader(volumes)


def test_metadata_missing_on_one_volume_is_named(volumes: list[Path]) -> None:
    (volumes[2] / "metadata/1.root.json").unlink()
    with pytest.raises(
        MediaError, match=r"metadata/1.root.json is on volume 1 .* but not on volume 3"
    ):
        VolumeSetReader(volumes)


def test_target_on_two_volumes_is_refused(volumes: list[Path]) -> None:
    stray = next((volumes[2] / "targets/sha256").iterdir())
    shutil.copy(stray, volumes[1] / "targets/sha256" / stray.name)
    with pytest.raises(MediaError, match=rf"targets/sha256/{stray.name} is on two volumes"):
        VolumeSetReader(volumes)


def test_incomplete_volume_is_named(volumes: list[Path]) -> None:
    lost = next((volumes[2] / "targets/sha256").iterdir())
    lost.unlink()
    with pytest.raises(MediaError, match=rf"volume 3 .* lacks targets/sha256/{lost.name}"):
        VolumeSetReader(volumes)


def test_volume_from_another_bundle_is_refused(volumes: list[Path], tmp_path: Path) -> None:
    other = make_bundle(tmp_path / "other", SIZES)
    (other / "metadata/targets.json").write_bytes(b'{"signed": {"other": true}}\n')
    other_volumes = write_volumes(other, tmp_path / "other-out", volume_size=VOLUME)
    with pytest.raises(MediaError, match="the volumes come from different bundles"):
        VolumeSetReader([volumes[0], other_volumes[1], volumes[2]])


def test_folder_without_volume_json_is_not_a_volume(bundle: Path, volumes: list[Path]) -> None:
    with pytest.raises(MediaError, match=r"bundle is not a bundle volume"):
        VolumeSetReader([bundle, *volumes])


def test_malformed_volume_json_is_refused(volumes: list[Path]) -> None:
    (volumes[0] / "VOLUME.json").write_text('{"volume": 0, "volumes": 3}')
    with pytest.raises(MediaError, match=r'VOLUME.json on .*vol01: expected "volume" to be'):
        VolumeSetReader(volumes)


# -- ISO volumes and plain copies -------------------------------------------------------


def test_iso_volumes_read_as_the_original_bundle(bundle: Path, tmp_path: Path) -> None:
    volume_size = LARGE + 2 * 2**20  # an image costs about 600 KiB more than its files
    images = write_volumes(bundle, tmp_path / "out", volume_size=volume_size, as_iso=True)
    assert [p.name for p in images] == [f"vol{n:02d}.iso" for n in range(1, len(images) + 1)]
    assert len(images) >= 2
    for image in images:
        assert image.stat().st_size <= volume_size
        with IsoReader(image) as single:
            assert "VOLUME.json" in {e.path for e in single.entries()}
    with VolumeSetReader(images) as reader:
        assert merged(reader) == merged(DirectoryReader(bundle))
        assert read_everything(reader) == tree_bytes(bundle)


def test_mixed_set_of_folders_and_images(volumes: list[Path], bundle: Path) -> None:
    image = volumes[1].with_suffix(".iso")
    write_iso(volumes[1], image, volume_id="vol02")
    with VolumeSetReader([volumes[0], image, volumes[2]]) as reader:
        assert read_everything(reader) == tree_bytes(bundle)
        assert str(image) in reader.description


def test_copy_is_identical(bundle: Path, tmp_path: Path) -> None:
    copy_bundle(bundle, tmp_path / "copy")
    assert tree_bytes(tmp_path / "copy") == tree_bytes(bundle)
    assert merged(DirectoryReader(tmp_path / "copy")) == merged(DirectoryReader(bundle))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_signed_bundle_verifies_from_an_image_and_from_volumes(tmp_path: Path) -> None:
    """End to end with a real signed bundle and the verifier, through each reader."""
    built = build(tmp_path / "built")
    anchor = TrustAnchor(fingerprint=built.keys_init.fingerprint)
    largest = max(p.stat().st_size for p in (built.bundle / "targets/sha256").iterdir())
    write_iso(built.bundle, tmp_path / "bundle.iso", volume_id="lab")
    folders = write_volumes(built.bundle, tmp_path / "dirs", volume_size=largest + 30 * KB)
    assert len(folders) >= 2
    images = [folder.with_suffix(".iso") for folder in folders]  # the same split, as images
    for folder, image in zip(folders, images, strict=True):
        write_iso(folder, image, volume_id=folder.name)
    readers: list[MediaReader] = [
        IsoReader(tmp_path / "bundle.iso"),
        VolumeSetReader(folders),
        VolumeSetReader(images),
    ]
    for reader in readers:
        result = verify_bundle(reader, anchor, now=NOW)
        assert (result.name, result.verified_files) == ("lab", 14), reader.description


# -- the command ------------------------------------------------------------------------


def appliance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
        timeout=120,
    )


def test_command_writes_a_folder(bundle: Path, tmp_path: Path) -> None:
    result = appliance("media", "write", str(bundle), "--out", str(tmp_path / "usb"), "-f", "dir")
    assert result.returncode == 0, result.stderr
    assert tree_bytes(tmp_path / "usb") == tree_bytes(bundle)
    assert f"wrote {tmp_path / 'usb'}" in result.stdout


def test_command_writes_an_iso(bundle: Path, tmp_path: Path) -> None:
    result = appliance("media", "write", str(bundle), "--out", str(tmp_path / "out"), "-f", "iso")
    assert result.returncode == 0, result.stderr
    image = tmp_path / "out/bundle.iso"
    assert f"wrote {image}" in result.stdout
    with IsoReader(image) as reader:
        assert read_everything(reader) == tree_bytes(bundle)


@pytest.mark.parametrize("fmt", ["dir", "iso"])
def test_command_writes_volumes(bundle: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    result = appliance(
        "media", "write", str(bundle), "--out", str(out), "--format", fmt, "--volume-size", "5M"
    )
    assert result.returncode == 0, result.stderr
    written = sorted(out.iterdir())
    suffix = ".iso" if fmt == "iso" else ""
    assert [p.name for p in written] == [f"vol{n:02d}{suffix}" for n in range(1, len(written) + 1)]
    assert len(written) >= 2
    for path in written:
        assert f"wrote {path}" in result.stdout
    assert f"{len(written)} volumes" in result.stdout
    with VolumeSetReader(written) as reader:
        assert read_everything(reader) == tree_bytes(bundle)


def test_command_refuses_an_unknown_format(bundle: Path, tmp_path: Path) -> None:
    result = appliance("media", "write", str(bundle), "--out", str(tmp_path / "o"), "-f", "zip")
    assert result.returncode == 2
    assert "'zip' is not one of 'dir', 'iso'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_command_refuses_a_bad_size(bundle: Path, tmp_path: Path) -> None:
    result = appliance(
        "media", "write", str(bundle), "--out", str(tmp_path / "o"), "-f", "dir",
        "--volume-size", "4.7X",
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown unit 'X'" in result.stderr
    assert "Traceback" not in result.stderr


def test_command_reports_a_media_error_without_traceback(bundle: Path, tmp_path: Path) -> None:
    result = appliance(
        "media", "write", str(bundle), "--out", str(tmp_path / "o"), "-f", "dir",
        "--volume-size", "1M",
    )  # fmt: skip
    assert result.returncode == 1
    assert "error: targets/sha256/" in result.stderr
    assert "more than the volume size 1000000" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()
