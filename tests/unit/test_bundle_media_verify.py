"""`appliance bundle verify` on every medium: an ISO, each volume alone, the set, a cut one."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.bundle.iso import write_iso
from appliance.bundle.volumes import write_volumes
from appliance.errors import SizeMismatchError
from appliance.media.verify import TrustAnchor, verify_bundle
from appliance.media.volumes import VolumeSetReader
from tests.unit.bundle_fixtures import Built, build

REPO = Path(__file__).resolve().parents[2]


def verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "bundle", "verify", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    # Real clock for the CLI: fixtures are signed "now", not at the fixed test time.
    return build(tmp_path_factory.mktemp("media"), now=datetime.now(UTC))


def test_iso_verifies_directly(built: Built, tmp_path: Path) -> None:
    iso = tmp_path / "lab.iso"
    write_iso(built.bundle, iso, volume_id="lab")
    iso.chmod(0o444)
    result = verify_cli(str(iso), "--root-fingerprint", built.keys_init.fingerprint)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: bundle lab 2026.11.0 is authentic and intact: 14 files")


def test_each_volume_alone_and_the_set(built: Built, tmp_path: Path) -> None:
    volumes = write_volumes(built.bundle, tmp_path / "vols", volume_size=40_000)
    assert len(volumes) >= 2
    counted = 0
    for volume in volumes:
        alone = verify_cli(str(volume), "--root-fingerprint", built.keys_init.fingerprint)
        assert alone.returncode == 0, alone.stderr
        assert "files on this volume verified" in alone.stdout
        counted += int(alone.stdout.split("intact: ")[1].split()[0])
    assert counted == 14
    whole = verify_cli(*map(str, volumes), "--root-fingerprint", built.keys_init.fingerprint)
    assert whole.returncode == 0, whole.stderr
    assert "14 files" in whole.stdout


def test_truncated_volume(built: Built, tmp_path: Path) -> None:
    volumes = write_volumes(built.bundle, tmp_path / "vols", volume_size=40_000)
    victim = max(
        (p for v in volumes for p in (v / "targets/sha256").iterdir()),
        key=lambda p: p.stat().st_size,
    )
    victim.chmod(0o644)
    with victim.open("r+b") as handle:
        handle.truncate(victim.stat().st_size // 2)
    with pytest.raises(SizeMismatchError, match=f"targets/sha256/{victim.name} .* smaller than"):
        verify_bundle(
            VolumeSetReader(volumes), TrustAnchor(fingerprint=built.keys_init.fingerprint)
        )
    alone = verify_cli(str(victim.parents[2]), "--root-fingerprint", built.keys_init.fingerprint)
    assert alone.returncode == 1
    assert f"targets/sha256/{victim.name}" in alone.stderr and "smaller than" in alone.stderr
