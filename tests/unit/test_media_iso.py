"""A bundle as an ISO image: exact round trip, streaming reads, refusals, atomic writes."""

from __future__ import annotations

import hashlib
import io
import os
import resource
from pathlib import Path

import pycdlib
import pytest

from appliance.bundle.iso import iso_volume_id, write_iso
from appliance.errors import MediaError
from appliance.media.iso import IsoReader
from appliance.media.reader import DirectoryReader, Entry
from tests.unit.fake_bundle_tree import LARGE, METADATA, content, make_bundle, tree_bytes


def read_all(reader: IsoReader | DirectoryReader, path: str) -> bytes:
    with reader.open(path) as handle:
        return handle.read()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


def test_round_trip_lists_exactly_the_tree(bundle: Path, tmp_path: Path) -> None:
    image = tmp_path / "out/bundle.iso"
    write_iso(bundle, image, volume_id="lab-2026.11")
    with IsoReader(image) as reader:
        listed = sorted(reader.entries(), key=lambda e: e.path)
        expected = sorted(DirectoryReader(bundle).entries(), key=lambda e: e.path)
        assert listed == expected
        # exact names: 64 lowercase hex digits, lowercase json names, no ";1" versions
        assert Entry("metadata/targets.json", "file", len(METADATA["targets.json"])) in listed
        assert sum(1 for e in listed if e.path.startswith("targets/sha256/")) == 5
        assert reader.description == str(image)


def test_every_file_reads_back_identical(bundle: Path, tmp_path: Path) -> None:
    image = tmp_path / "bundle.iso"
    write_iso(bundle, image, volume_id="lab")
    original = tree_bytes(bundle)
    with IsoReader(image) as reader:
        assert {path: read_all(reader, path) for path in original} == original


def test_large_file_streams_in_chunks(bundle: Path, tmp_path: Path) -> None:
    image = tmp_path / "bundle.iso"
    write_iso(bundle, image, volume_id="lab")
    data = content(3, LARGE)
    path = f"targets/sha256/{hashlib.sha256(data).hexdigest()}"
    with IsoReader(image) as reader:
        handle = reader.open(path)
        other = reader.open("metadata/root.json")  # a second stream on the same image
        chunks = []
        while chunk := handle.read(64 * 1024):
            assert len(chunk) <= 64 * 1024
            chunks.append(chunk)
            if len(chunks) == 3:
                assert other.read() == METADATA["root.json"]
        assert len(chunks) == LARGE // (64 * 1024)
        assert b"".join(chunks) == data
        assert handle.read(10) == b""
        handle.close()
        assert handle.closed
        other.close()


def test_readinto_fills_a_buffer(bundle: Path, tmp_path: Path) -> None:
    image = tmp_path / "bundle.iso"
    write_iso(bundle, image, volume_id="lab")
    with IsoReader(image) as reader, reader.open("metadata/timestamp.json") as handle:
        buffer = bytearray(8)
        assert handle.readinto(buffer) == 8
        assert bytes(buffer) == METADATA["timestamp.json"][:8]


def test_image_has_udf_rock_ridge_and_joliet(bundle: Path, tmp_path: Path) -> None:
    image = tmp_path / "bundle.iso"
    write_iso(bundle, image, volume_id="lab bundle 2026.11.0")
    iso = pycdlib.PyCdlib()
    iso.open(str(image))
    try:
        assert iso.has_udf() and iso.has_rock_ridge() and iso.has_joliet()
        volume_id = iso.pvd.volume_identifier.decode().rstrip()
        assert volume_id == "LAB_BUNDLE_2026_"  # 16 characters: what Joliet can hold
        joliet = {name for _, _, names in iso.walk(joliet_path="/") for name in names}
        assert set(METADATA) <= joliet  # Joliet carries every name that fits it
    finally:
        iso.close()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("lab", "LAB"),
        ("lab-2026.11.0", "LAB_2026_11_0"),
        ("x" * 40, "X" * 16),
        ("", "BUNDLE"),
        ("ünïcode", "_N_CODE"),
    ],
)
def test_volume_id_is_sanitised(given: str, expected: str) -> None:
    assert iso_volume_id(given) == expected


def test_writing_refuses_a_symlink(bundle: Path, tmp_path: Path) -> None:
    (bundle / "targets/sha256/link").symlink_to(bundle / "metadata/root.json")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MediaError, match=r"targets/sha256/link in .* is a symbolic link"):
        write_iso(bundle, out / "bundle.iso", volume_id="lab")
    assert list(out.iterdir()) == []


def test_writing_refuses_a_linked_directory(bundle: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (bundle / "extra").symlink_to(elsewhere)
    with pytest.raises(MediaError, match=r"extra in .* is a symbolic link"):
        write_iso(bundle, tmp_path / "bundle.iso", volume_id="lab")
    assert not (tmp_path / "bundle.iso").exists()


def test_writing_refuses_a_fifo(bundle: Path, tmp_path: Path) -> None:
    os.mkfifo(bundle / "metadata/pipe")
    with pytest.raises(MediaError, match=r"metadata/pipe in .* is not a regular file"):
        write_iso(bundle, tmp_path / "bundle.iso", volume_id="lab")
    assert not (tmp_path / "bundle.iso").exists()


def test_writing_refuses_an_image_inside_the_bundle(bundle: Path) -> None:
    with pytest.raises(MediaError, match="inside the bundle"):
        write_iso(bundle, bundle / "bundle.iso", volume_id="lab")
    assert not (bundle / "bundle.iso").exists()


def test_failed_write_leaves_the_old_image_and_no_temporary(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    image = out / "bundle.iso"
    image.write_bytes(b"the previous image")
    victim = next(p for p in (bundle / "targets/sha256").iterdir() if p.stat().st_size == LARGE)
    real_write_fp = pycdlib.PyCdlib.write_fp

    def shrink_then_write(self: pycdlib.PyCdlib, *args: object, **kwargs: object) -> None:
        victim.write_bytes(victim.read_bytes()[:1000])  # a file changes while it is written
        real_write_fp(self, *args, **kwargs)

    monkeypatch.setattr(pycdlib.PyCdlib, "write_fp", shrink_then_write)
    with pytest.raises(MediaError, match=f"{victim.name} changed while the image was written"):
        write_iso(bundle, image, volume_id="lab")
    assert image.read_bytes() == b"the previous image"
    assert [p.name for p in out.iterdir()] == ["bundle.iso"]


def test_writing_holds_one_source_file_open_at_a_time(tmp_path: Path) -> None:
    """pycdlib keeps every added file object until it writes: they must not all be open."""
    bundle = make_bundle(tmp_path / "bundle", sizes=tuple(range(1, 301)))
    open_now = sum(1 for _ in Path("/proc/self/fd").iterdir())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 40, hard))
    try:
        write_iso(bundle, tmp_path / "many.iso", volume_id="many")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with IsoReader(tmp_path / "many.iso") as reader:
        assert sum(1 for e in reader.entries() if e.kind == "file") == 300 + len(METADATA)


def _crafted(path: Path, *, udf: bool, symlink: bool = True) -> Path:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, rock_ridge="1.09", udf="2.60" if udf else None)
    iso.add_directory(
        iso_path="/metadata", rr_name="metadata", udf_path="/metadata" if udf else None
    )
    data = b'{"signed": {}}'
    iso.add_fp(
        io.BytesIO(data),
        len(data),
        iso_path="/metadata/root.json",
        rr_name="root.json",
        udf_path="/metadata/root.json" if udf else None,
    )
    if symlink:
        iso.add_symlink(
            symlink_path="/metadata/timestamp.json",
            rr_symlink_name="timestamp.json",
            rr_path="/etc/passwd",
            udf_symlink_path="/metadata/timestamp.json" if udf else None,
            udf_target="/etc/passwd" if udf else None,
        )
    iso.write(str(path))
    iso.close()
    return path


def test_symlink_is_reported_as_a_symlink(tmp_path: Path) -> None:
    with IsoReader(_crafted(tmp_path / "link.iso", udf=True)) as reader:
        kinds = {e.path: e.kind for e in reader.entries()}
        assert kinds == {
            "metadata": "dir",
            "metadata/root.json": "file",
            "metadata/timestamp.json": "symlink",
        }
        with pytest.raises(MediaError, match=r"metadata/timestamp.json on .* not a regular file"):
            reader.open("metadata/timestamp.json")


def test_rock_ridge_only_image_is_read_with_exact_names(tmp_path: Path) -> None:
    with IsoReader(_crafted(tmp_path / "rr.iso", udf=False)) as reader:
        assert sorted((e.path, e.kind) for e in reader.entries()) == [
            ("metadata", "dir"),
            ("metadata/root.json", "file"),
            ("metadata/timestamp.json", "symlink"),
        ]
        assert read_all(reader, "metadata/root.json") == b'{"signed": {}}'


def test_image_whose_udf_and_rock_ridge_views_differ_is_refused(tmp_path: Path) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, rock_ridge="1.09", udf="2.60")
    iso.add_fp(io.BytesIO(b"x"), 1, iso_path="/a.json", rr_name="a.json", udf_path="/b.json")
    iso.write(str(tmp_path / "split.iso"))
    iso.close()
    with pytest.raises(MediaError, match=r"split.iso: a.json is only in the Rock Ridge view"):
        IsoReader(tmp_path / "split.iso")


def test_image_whose_views_hold_different_data_is_refused(tmp_path: Path) -> None:
    """A kernel mount could show the Rock Ridge bytes while the verifier checked UDF's."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, rock_ridge="1.09", udf="2.60")
    iso.add_fp(io.BytesIO(b"checked"), 7, udf_path="/a.json")
    iso.add_fp(io.BytesIO(b"swapped"), 7, iso_path="/a.json", rr_name="a.json")
    iso.write(str(tmp_path / "two.iso"))
    iso.close()
    with pytest.raises(MediaError, match=r"a.json has different data in the UDF and Rock Ridge"):
        IsoReader(tmp_path / "two.iso")


def test_not_an_image_is_a_media_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(content(1, 100_000))
    with pytest.raises(MediaError, match=r"junk.iso is not a readable ISO 9660 image"):
        IsoReader(junk)
    with pytest.raises(MediaError, match=r"cannot read ISO image .*missing.iso"):
        IsoReader(tmp_path / "missing.iso")


def test_open_refuses_what_is_not_a_file(bundle: Path, tmp_path: Path) -> None:
    write_iso(bundle, tmp_path / "bundle.iso", volume_id="lab")
    with IsoReader(tmp_path / "bundle.iso") as reader:
        with pytest.raises(MediaError, match="no such file"):
            reader.open("metadata/nope.json")
        with pytest.raises(MediaError, match="not a regular file"):
            reader.open("targets")
        with pytest.raises(MediaError, match="no such file"):
            reader.open("targets/../metadata/root.json")
