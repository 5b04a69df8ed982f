"""installer/install.sh from real media: nothing from the media runs before it is proven.

The media here holds the real installer wheelhouse and the repository's roles and
playbooks; the bootstrap runs with the machine's python3 and openssl, as at a site.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.bundle.builder import build_bundle
from appliance.bundle.delta import load_base
from appliance.bundle.signing import init_keys
from appliance.components.wheelhouse import installer_wheelhouse
from appliance.definition import load_definition

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("vendor")
    shutil.copytree(REPO / "installer", root / "installer")
    shutil.copytree(REPO / "roles", root / "roles")
    (root / "model").mkdir()
    (root / "model/config.json").write_text('{"hidden_size": 128}')
    requirements = load_definition(REPO / "bundles/lab.yaml").installer.requirements
    (root / "bundle.yaml").write_text(
        json.dumps(
            {
                "name": "lab",
                "version": "2026.11.0",
                "installer": {"requirements": requirements, "content": ["roles", "installer"]},
                "components": [
                    {"name": "tiny-model", "version": "1", "files": [{"path": "model"}]}
                ],
            }
        )
    )
    init_keys(root / "keys")
    result = build_bundle(
        load_definition(root / "bundle.yaml"),
        root / "keys",
        root / "media",
        wheelhouse=lambda d, scratch: installer_wheelhouse(d.installer.requirements, scratch),
    )
    return root / "media", result.root_fingerprint


@pytest.fixture(scope="module")
def delta(media: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Delta media of the next release against ``media`` (issue 28): its installer wheels
    are left to the site's store."""
    folder, _ = media
    root = folder.parent
    definition = json.loads((root / "bundle.yaml").read_text())
    (root / "bundle-2.yaml").write_text(json.dumps({**definition, "version": "2026.12.0"}))
    out = tmp_path_factory.mktemp("delta") / "media"
    result = build_bundle(
        load_definition(root / "bundle-2.yaml"),
        root / "keys",
        out,
        wheelhouse=lambda d, scratch: installer_wheelhouse(d.installer.requirements, scratch),
        base=load_base(folder, root / "keys"),
    )
    assert result.left_to_site > 0
    return out


def site_holding(media: Path, home: Path) -> None:
    """Make ``home`` a site that imported ``media``: its store and the root it trusts."""
    shutil.copytree(media / "targets/sha256", home / "site/content/sha256")
    shutil.copy(media / "metadata/root.json", home / "site/root.json")


@pytest.fixture(params=["full", "delta"])
def attacked(
    request: pytest.FixtureRequest, media: tuple[Path, str], delta: Path, tmp_path: Path
) -> tuple[Path, Path, str]:
    """A copy of full or delta media to tamper with, the installer home to run it in (for
    delta media, a site holding the base release), and the vendor's root fingerprint."""
    folder, fingerprint = media
    home = tmp_path / "home"
    if request.param == "full":
        return copy_of(folder, tmp_path), home, fingerprint
    site_holding(folder, home)
    return copy_of(delta, tmp_path), home, fingerprint


def bootstrap(media: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env["APPLIANCE_INSTALLER_HOME"] = str(home)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"  # the workstation's, no venv
    return subprocess.run(
        ["sh", str(media / "install.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )


def copy_of(media: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "media"
    shutil.copytree(media, dest)
    return dest


def stored(media: Path, logical: str) -> Path:
    targets = json.loads((media / "metadata/targets.json").read_text())["signed"]["targets"]
    return media / "targets/sha256" / targets[logical]["hashes"]["sha256"]


def test_the_proven_media_installs_the_installer_offline_and_runs_it(
    media: tuple[Path, str], tmp_path: Path
) -> None:
    folder, fingerprint = media
    run = bootstrap(
        folder, tmp_path / "home", "--inventory", "/nonexistent", "--root-fingerprint", fingerprint
    )
    assert "targets signed" in run.stdout, run.stderr
    # The installed `appliance install` ran, from wheels on the media alone, and refused
    # the missing inventory with what to do.
    assert "the inventory /nonexistent does not exist" in run.stderr
    assert run.returncode == 1
    assert (tmp_path / "home/installer-venv/bin/ansible-playbook").is_file()


def test_a_wrong_fingerprint_runs_nothing(media: tuple[Path, str], tmp_path: Path) -> None:
    folder, _ = media
    run = bootstrap(folder, tmp_path / "home", "--root-fingerprint", "sha256:" + "0" * 64)
    assert run.returncode == 1
    assert "not the vendor's media" in run.stderr
    assert not (tmp_path / "home/installer-venv").exists()


def test_code_on_the_workstations_pythonpath_never_runs(
    media: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = media
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "ran"
    (planted / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.setenv("PYTHONPATH", str(planted))
    run = bootstrap(folder, tmp_path / "home", "--root-fingerprint", "sha256:" + "0" * 64)
    assert run.returncode == 1
    assert "not the vendor's media" in run.stderr
    assert not marker.exists()


def test_a_first_install_without_a_fingerprint_is_refused(
    media: tuple[Path, str], tmp_path: Path
) -> None:
    folder, fingerprint = media
    run = bootstrap(folder, tmp_path / "home")
    assert run.returncode == 1
    assert "needs --root-fingerprint" in run.stderr and fingerprint in run.stderr
    assert not (tmp_path / "home/installer-venv").exists()


def test_forged_targets_metadata_is_refused(attacked: tuple[Path, Path, str]) -> None:
    forged, home, fingerprint = attacked
    targets = forged / "metadata/targets.json"
    document = json.loads(targets.read_text())
    document["signed"]["version"] += 1  # the attacker's own content, old signature
    targets.chmod(0o644)
    targets.write_text(json.dumps(document))
    run = bootstrap(forged, home, "--root-fingerprint", fingerprint)
    assert run.returncode == 1
    assert "0 valid signatures" in run.stderr
    assert not (home / "installer-venv").exists()


def test_a_swapped_wheel_is_refused(attacked: tuple[Path, Path, str]) -> None:
    swapped, home, fingerprint = attacked
    targets = json.loads((swapped / "metadata/targets.json").read_text())["signed"]["targets"]
    wheel = next(name for name in targets if name.startswith("installer/wheels/appliance-"))
    digest = targets[wheel]["hashes"]["sha256"]
    # Full media carry the wheel; delta media leave it to the site's store: swap it there.
    blob = swapped / "targets/sha256" / digest
    if not blob.exists():
        blob = home / "site/content/sha256" / digest
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"malicious")
    run = bootstrap(swapped, home, "--root-fingerprint", fingerprint)
    assert run.returncode == 1
    assert wheel in run.stderr and "expected sha256" in run.stderr
    assert not (home / "installer-venv").exists()


def test_delta_media_take_the_wheels_the_site_holds_from_its_store(
    media: tuple[Path, str], delta: Path, tmp_path: Path
) -> None:
    """Issue 28: delta media leave the wheels of the release the site holds out; the
    bootstrap hashes them from the site's store, and refuses a site that lacks them."""
    folder, fingerprint = media
    lacking = bootstrap(delta, tmp_path / "bare", "--root-fingerprint", fingerprint)
    assert lacking.returncode == 1
    assert "neither on this delta media nor in the site store" in lacking.stderr
    assert not (tmp_path / "bare/installer-venv").exists()

    site_holding(folder, tmp_path / "home")
    run = bootstrap(delta, tmp_path / "home", "upgrade", "--inventory", "/nonexistent")
    assert "targets signed" in run.stdout, run.stderr
    assert "the inventory /nonexistent does not exist" in run.stderr
