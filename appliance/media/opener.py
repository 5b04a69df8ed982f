"""The reader for what a person named: a bundle directory, an ISO image, or volumes."""

from __future__ import annotations

from pathlib import Path

from appliance.errors import MediaError
from appliance.media.iso import IsoReader
from appliance.media.layout import VOLUME_FILE
from appliance.media.reader import DirectoryReader, MediaReader
from appliance.media.volumes import VolumeReader, VolumeSetReader

__all__ = ["open_bundle_media", "open_media"]


def open_media(paths: list[Path]) -> MediaReader:
    """The reader for what the user named: a directory, an ISO file, or several volumes."""
    if len(paths) == 1 and paths[0].is_dir():
        return DirectoryReader(paths[0])
    if len(paths) == 1 and paths[0].is_file():
        return IsoReader(paths[0])
    if len(paths) > 1:
        return VolumeSetReader(paths)
    raise MediaError(f"{paths[0]} does not exist: expected a bundle directory or an ISO image")


def open_bundle_media(paths: list[Path]) -> tuple[MediaReader, bool]:
    """Like open_media, but one volume of a split set (it holds VOLUME.json) is read as a
    volume: the second value is True, and files on other volumes are not required."""
    reader = open_media(paths)
    if len(paths) == 1 and any(e.path == VOLUME_FILE for e in reader.entries()):
        close = getattr(reader, "close", None)
        if close is not None:
            close()
        return VolumeReader(paths[0]), True
    return reader, False
