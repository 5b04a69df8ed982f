"""The installer on the lab, from real signed media, as issue #7 asks it to show.

One lab and one set of media for the module: booting, signing and a cold install take
minutes on two cores. The tests run in file order; each leaves the site installed for
the next. The media hold vLLM, the admin service and the model only: this is the site
installed without OpenZiti, which `appliance status` must say in one line. The overlay
is tested in test_overlay_lab.py, with supplied OpenZiti programs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.components.build import BuildReport
from appliance.install.health import OVERLAY_MISSING, non_loopback_listeners
from appliance.lab import LabPlan, down, up
from appliance.lab.media import LabMedia, make_lab_media
from tests.lab.conftest import TEST_LAB
from tests.lab.support import REPO, admin_api, kill_tree, ssh, tcp_scan, udp_scan

HOSTS = ("ctrl1", "gw1", "gpu1")
#: This module's site is the one without OpenZiti (tests/lab/test_overlay_lab.py has the
#: overlay): its media leave the OpenZiti components out even where they are built.
WITHOUT_OVERLAY = ("vllm", "appliance-admin", "tiny-model")
NEW_PASSWORD = "kept-through-upgrades-1"


@dataclass
class Site:
    """The lab, its media by name, and where the installer keeps its state."""

    lab: Path
    plan: LabPlan
    home: Path
    media: dict[str, LabMedia]

    @property
    def address(self) -> dict[str, str]:
        """Host name → site address (the lab's number decides them)."""
        return {m.name: m.site_address for m in self.plan.machines}

    @property
    def outside(self) -> dict[str, str]:
        """Host name → outside address (gateway hosts and the vendor access host)."""
        return {m.name: m.outside_address for m in self.plan.machines if m.outside_address}

    @property
    def inventory(self) -> Path:
        return self.lab / "inventory.yml"

    @property
    def site_dir(self) -> Path:
        return self.home / "site"

    @property
    def fingerprint(self) -> str:
        return self.media["n"].root_fingerprint

    def argv(self, media: Path, command: str, *args: str) -> list[str]:
        return ["sh", str(media / "install.sh"), command, "--inventory", str(self.inventory), *args]

    def env(self) -> dict[str, str]:
        """The workstation's environment: no virtualenv or pip settings of the test run."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
        env["APPLIANCE_INSTALLER_HOME"] = str(self.home)
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        return env

    def run(self, media: str | Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run install.sh from the media as the installer would."""
        path = self.media[media].path if isinstance(media, str) else media
        return subprocess.run(
            self.argv(path, command, *args),
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=1800,
            check=False,
        )

    def installed(self) -> dict[str, object]:
        return dict(json.loads((self.site_dir / "installed.json").read_text()))

    def journal(self) -> dict[str, str]:
        try:
            raw = json.loads((self.site_dir / "journal.json").read_text())
        except (OSError, ValueError):
            return {}
        return {step["name"]: step["state"] for step in raw["steps"]}


def _model(source: Path, dest: Path, change: Callable[[Path], None]) -> Path:
    shutil.copytree(source, dest)
    change(dest)
    return dest


@pytest.fixture(scope="module")
def site(
    build_lab: Callable[..., BuildReport], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    build_lab(*WITHOUT_OVERLAY)
    work = tmp_path_factory.mktemp("install-lab")
    model = REPO / "build/models/tiny"
    # N+1 changes one component: the model gains a file. The broken one cannot be served.
    revised = _model(model, work / "model-2/tiny", lambda d: (d / "REVISION").write_text("2\n"))
    broken = _model(
        model,
        work / "model-3/tiny",
        lambda d: (d / "config.json").write_text(
            json.dumps(
                {**json.loads((d / "config.json").read_text()), "architectures": ["NoSuchLM"]}
            )
        ),
    )
    media: dict[str, LabMedia] = {}
    # Signed in version order: metadata versions only grow with the same keys.
    for name, version, files, revision in (
        ("older", "2026.11.0", None, None),
        ("n", "2026.11.1", None, None),
        ("n1", "2026.11.2", revised, "2"),
        ("broken", "2026.11.3", broken, "3"),
    ):
        media[name] = make_lab_media(
            work / name,
            work / "keys",
            definition=REPO / "bundles/lab.yaml",
            version=version,
            model=files,
            model_version=revision,
            only=WITHOUT_OVERLAY,
        )
    state = work / "lab"
    try:
        lab = up(HOSTS, state, name=TEST_LAB)
        yield Site(lab=state, plan=lab.plan, home=work / "installer", media=media)
    finally:
        down(state)
        shutil.rmtree(work, ignore_errors=True)  # four media and a site store: gigabytes


def _on_every_host(site: Site, command: str) -> dict[str, subprocess.CompletedProcess[str]]:
    return {name: ssh(site.lab, address, command) for name, address in site.address.items()}


def _host_installed(site: Site, host: str) -> dict[str, object]:
    done = ssh(site.lab, site.address[host], "cat /etc/appliance/installed.json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _admin(site: Site, *, seed: str | None = None) -> dict[str, list[object]]:
    """The accounts, and the installer's records in the audit log, oldest first, from the
    admin API on ctrl1 (the service listens on its loopback only). ``seed``: the first
    admin's one-time password, changed before an auditor account is added."""
    address = site.address["ctrl1"]
    if seed is not None:
        added = admin_api(
            site.lab,
            address,
            seed,
            [("POST", "/users", {"username": "kept-auditor", "role": "auditor"})],
            new_password=NEW_PASSWORD,
        )
        assert added[0][0] == 201, added
    (status, users), (found, records) = admin_api(
        site.lab,
        address,
        NEW_PASSWORD,
        [("GET", "/users", None), ("GET", "/audit/records?action=installer.&limit=1000", None)],
    )
    assert (status, found) == (200, 200), (users, records)
    return {
        "users": sorted(u["username"] for u in users),
        "installer": [[r["action"], r["outcome"]] for r in reversed(records)],
    }


def _wait_for_step(site: Site, process: subprocess.Popen[str], step: str) -> None:
    deadline = time.monotonic() + 900
    while site.journal().get(step) != "running":
        assert process.poll() is None, f"the installer ended before {step}: {process.returncode}"
        assert time.monotonic() < deadline, f"the installer never reached {step}"
        time.sleep(0.1)


def test_tampered_media_is_refused_before_any_host_is_touched(site: Site) -> None:
    original = site.media["n"].path
    tampered = original.parent / "tampered"
    shutil.copytree(original, tampered, copy_function=os.link)
    targets = json.loads((tampered / "metadata/targets.json").read_text())["signed"]["targets"]
    digest = targets["files/tiny-model/tiny/config.json"]["hashes"]["sha256"]
    blob = tampered / "targets/sha256" / digest
    changed = blob.read_bytes().replace(b"128", b"256", 1)
    blob.unlink()  # a new file: the original media's hard-linked blob stays as it was
    blob.write_bytes(changed)

    done = site.run(tampered, "install", "--root-fingerprint", site.fingerprint)

    assert done.returncode != 0
    assert "files/tiny-model/tiny/config.json" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (site.site_dir / "journal.json").exists()
    assert not (site.site_dir / "content").exists()
    for host, probe in _on_every_host(site, "ls -d /etc/appliance /var/lib/appliance").items():
        assert probe.returncode != 0 and not probe.stdout, f"{host} was touched: {probe.stdout}"


def test_killed_at_three_steps_every_rerun_goes_on_and_the_last_completes(site: Site) -> None:
    args = ("--root-fingerprint", site.fingerprint, "--health-wait", "400")
    for step, settle in (("import", 0.0), ("converge", 25.0), ("health", 2.0)):
        process = subprocess.Popen(
            site.argv(site.media["n"].path, "install", *args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=site.env(),
            text=True,
        )
        try:
            _wait_for_step(site, process, step)
            time.sleep(settle)
        finally:
            kill_tree(process.pid)
            process.wait(timeout=60)
        assert site.journal()[step] == "running", f"the kill missed {step}: {site.journal()}"

    done = site.run("n", "install", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(resumed at health)" in done.stdout
    assert "installed lab 2026.11.1" in done.stdout
    assert site.installed()["version"] == "2026.11.1"
    assert all(state == "done" for state in site.journal().values())
    credential = site.site_dir / "credentials/ctrl1.credential"
    assert oct(credential.stat().st_mode & 0o777) == "0o600"
    assert _host_installed(site, "gpu1")["components"] == {"vllm": "0.32.0", "tiny-model": "1"}


def test_the_site_is_healthy_and_dark(site: Site) -> None:
    status = site.run("n", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "site runs lab 2026.11.1" in status.stdout
    assert "FAIL" not in status.stdout
    missing = [line for line in status.stdout.splitlines() if line.startswith("overlay:")]
    assert missing == [OVERLAY_MISSING], status.stdout

    # Inside every host: nothing but SSH listens beyond loopback, on TCP or UDP.
    for host, listening in _on_every_host(site, "ss -Htln; ss -Huln").items():
        assert listening.returncode == 0, listening.stderr
        beyond = non_loopback_listeners(listening.stdout.splitlines())
        assert {a.rsplit(":", 1)[1] for a in beyond} <= {"22"}, f"{host}: {beyond}"
    # From outside the hosts: the installer's workstation finds only SSH on each host; the
    # vendor's namespace reaches nothing at all: not the outside legs, not the access host's
    # site address it routes to (no overlay, so no vendor access router and no gate).
    # Nothing answers a UDP datagram either.
    assert tcp_scan(list(site.address.values())) == {a: [22] for a in site.address.values()}
    access = site.plan.vendor_access
    assert access is not None
    vendor_side = [*site.outside.values(), access.site_address]
    assert tcp_scan(vendor_side, namespace=site.plan.vendor.namespace) == {
        a: [] for a in vendor_side
    }
    assert udp_scan(list(site.address.values())) == {a: [] for a in site.address.values()}
    assert udp_scan(vendor_side, namespace=site.plan.vendor.namespace) == {
        a: [] for a in vendor_side
    }


# Run with the admin image's own Python on ctrl1 (host network: podman in the lab cannot
# make namespaces): an active window as activation leaves it (activation itself needs
# OpenZiti), or the window's state and its audit records.
_WINDOW = r"""
import json, sys
from sqlalchemy import select
from sqlalchemy.orm import Session
from appliance.db.engine import make_engine
from appliance.db.models import AuditEvent, BreakglassWindow
from appliance.lab.windows import add_active_window
url = "sqlite:////var/lib/appliance-admin/admin.db"
if sys.argv[1] == "open":
    print(add_active_window(url, int(sys.argv[2])))
else:
    with Session(make_engine(url)) as db:
        window = db.get(BreakglassWindow, int(sys.argv[2]))
        records = db.scalars(select(AuditEvent).where(AuditEvent.target == f"window:{window.id}"))
        print(json.dumps({"state": window.state.value, "ended_by": window.ended_by,
                          "records": [[r.actor, r.action] for r in records]}))
"""


def _window(site: Site, *args: str) -> str:
    image = "$(podman images --format '{{.Repository}}:{{.Tag}}' | grep appliance-admin | head -1)"
    command = (
        "podman run --rm --network host --volume /var/lib/appliance-admin:/var/lib/appliance-admin"
        f" --entrypoint /opt/appliance/bin/python {image} -c {shlex.quote(_WINDOW)} "
        + " ".join(shlex.quote(a) for a in args)
    )
    done = ssh(site.lab, site.address["ctrl1"], command)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_window_ends_on_time_with_the_admin_service_stopped(site: Site) -> None:
    reaper = ssh(site.lab, site.address["ctrl1"], "systemctl is-active appliance-breakglass-reaper")
    assert reaper.stdout.strip() == "active", reaper.stdout + reaper.stderr
    stopped = ssh(site.lab, site.address["ctrl1"], "systemctl stop appliance-admin")
    assert stopped.returncode == 0, stopped.stderr
    try:
        window = _window(site, "open", "20")
        deadline = time.monotonic() + 120
        while (found := json.loads(_window(site, "show", window)))["state"] == "active":
            assert time.monotonic() < deadline, "the reaper did not end the window"
            time.sleep(3)
        assert found == {
            "state": "expired",
            "ended_by": "reaper",
            "records": [["reaper", "breakglass.expire"]],
        }
    finally:
        started = ssh(site.lab, site.address["ctrl1"], "systemctl start appliance-admin")
        assert started.returncode == 0, started.stderr


def test_a_second_run_changes_nothing(site: Site) -> None:
    done = site.run("n", "install")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ansible changed=0, nothing changed" in done.stdout
    assert "one-time password" in done.stdout  # still unused: shown again, from the site folder


def test_an_upgrade_whose_health_fails_rolls_back_with_data_intact(site: Site) -> None:
    otp = (site.site_dir / "credentials/ctrl1.credential").read_text().strip()
    seeded = _admin(site, seed=otp)
    assert "kept-auditor" in seeded["users"]
    # The refused tampered media and the install, sent once the admin service existed.
    assert seeded["installer"] == [
        ["installer.install", "refused"],
        ["installer.install", "ok"],
        ["installer.install", "ok"],
    ]

    done = site.run("broken", "upgrade", "--health-wait", "120")

    assert done.returncode != 0
    assert "rolled back to 2026.11.1, which passed its health checks" in done.stderr, done.stderr
    assert "vLLM" in done.stderr or "model" in done.stderr
    assert site.installed()["version"] == "2026.11.1"
    assert _host_installed(site, "gpu1")["components"] == {"vllm": "0.32.0", "tiny-model": "1"}
    after = _admin(site)
    assert "kept-auditor" in after["users"]
    assert after["installer"][-1] == ["installer.upgrade", "rolled-back"]
    snapshots = ssh(
        site.lab, site.address["ctrl1"], "ls -A /var/lib/appliance/snapshots"
    ).stdout.split()
    assert any(s.startswith("2026.11.1-") for s in snapshots)  # the pre-upgrade copy
    assert any(s.startswith("2026.11.3-replaced-") for s in snapshots)  # what it replaced
    assert not [s for s in snapshots if s.startswith(".")], snapshots  # no scratch left
    kinds = sorted(
        json.loads(p.read_text())["kind"] for p in (site.site_dir / "journals").iterdir()
    )
    assert "upgrade" in kinds


def test_upgrade_to_the_next_version_changes_one_component(site: Site) -> None:
    done = site.run("n1", "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "upgraded to lab 2026.11.2" in done.stdout
    assert site.installed()["version"] == "2026.11.2"
    assert _host_installed(site, "gpu1")["components"] == {"vllm": "0.32.0", "tiny-model": "2"}
    assert _host_installed(site, "ctrl1")["components"] == {"appliance-admin": "0.1.0"}
    after = _admin(site)
    assert "kept-auditor" in after["users"]
    assert after["installer"][-1] == ["installer.upgrade", "ok"]
    model = ssh(site.lab, site.address["gpu1"], "cat /var/lib/appliance/models/tiny/2/REVISION")
    assert model.stdout.strip() == "2"


def test_rollback_on_demand_returns_to_the_previous_version(site: Site) -> None:
    done = site.run("n1", "rollback")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rolled back to lab 2026.11.1" in done.stdout
    assert site.installed()["version"] == "2026.11.1"
    assert _host_installed(site, "gpu1")["components"] == {"vllm": "0.32.0", "tiny-model": "1"}
    after = _admin(site)
    assert "kept-auditor" in after["users"]
    # The database went back to the snapshot, but the audit records made since were
    # carried into it: the upgrade's own record is still there, then the rollback.
    assert after["installer"][-2:] == [["installer.upgrade", "ok"], ["installer.rollback", "ok"]]

    again = site.run("n1", "rollback")
    assert again.returncode != 0
    assert "no upgrade to roll back" in again.stderr


def test_an_older_bundle_is_refused(site: Site) -> None:
    for command in ("install", "upgrade"):
        done = site.run("older", command)
        assert done.returncode != 0
        assert "2026.11.0 is not newer than the installed 2026.11.1" in done.stderr, done.stderr
    assert site.installed()["version"] == "2026.11.1"
    installer = _admin(site)["installer"]
    assert installer[-2:] == [["installer.install", "refused"], ["installer.upgrade", "refused"]]


def test_the_audit_log_verifies_after_every_rollback(site: Site) -> None:
    checked = ssh(
        site.lab,
        site.address["ctrl1"],
        "podman run --rm --pull=never --network=host "
        "--volume=/var/lib/appliance-admin:/var/lib/appliance-admin "
        "--volume=/etc/appliance-admin:/etc/appliance-admin:ro "
        "localhost/appliance/appliance-admin:0.1.0 audit check "
        "--config=/etc/appliance-admin/config.yaml",
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("OK: ")


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_an_upgrade_from_delta_media_built_against_the_sites_export(site: Site) -> None:
    """Issue 28: the site exports what it holds, the vendor builds the next release as
    delta media against it (only the new model), and the site upgrades from them."""
    export = site.home / "site-state.json"
    appliance = str(site.home / "installer-venv/bin/appliance")
    exported = subprocess.run(
        [appliance, "site", "state", "--out", str(export), "--site-dir", str(site.site_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "holds 2026.11.1 whole" in exported.stdout
    work = site.home.parent
    model = _model(
        REPO / "build/models/tiny",
        work / "model-4/tiny",
        lambda d: (d / "REVISION").write_text("4\n"),
    )
    site.media["delta"] = make_lab_media(
        work / "delta",
        work / "keys",
        definition=REPO / "bundles/lab.yaml",
        version="2026.11.4",
        model=model,
        model_version="4",
        only=WITHOUT_OVERLAY,
        since=export,
    )
    delta, full = site.media["delta"].path, site.media["n1"].path
    # The images and wheels stay at the site: the media carry the model and the SBOMs.
    assert _bytes_under(delta / "targets") * 20 < _bytes_under(full / "targets")

    done = site.run("delta", "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "delta media:" in done.stdout and "found in the site store" in done.stdout
    assert "upgraded to lab 2026.11.4" in done.stdout
    assert site.installed()["version"] == "2026.11.4"
    assert _host_installed(site, "gpu1")["components"] == {"vllm": "0.32.0", "tiny-model": "4"}
    model_file = ssh(
        site.lab, site.address["gpu1"], "cat /var/lib/appliance/models/tiny/4/REVISION"
    )
    assert model_file.stdout.strip() == "4"


def test_rollback_after_the_delta_upgrade_returns_to_the_previous_version(site: Site) -> None:
    done = site.run("delta", "rollback")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rolled back to lab 2026.11.1" in done.stdout
    assert site.installed()["version"] == "2026.11.1"
    assert _host_installed(site, "gpu1")["components"] == {"vllm": "0.32.0", "tiny-model": "1"}
    after = _admin(site)
    assert "kept-auditor" in after["users"]
    assert after["installer"][-2:] == [["installer.upgrade", "ok"], ["installer.rollback", "ok"]]


def test_tampered_delta_media_are_refused_before_any_host_is_touched(site: Site) -> None:
    """Issue 28: the attack on full media, on delta media: a carried blob changed."""
    original = site.media["delta"].path
    tampered = original.parent / "delta-tampered"
    shutil.copytree(original, tampered, copy_function=os.link)
    logical = "files/tiny-model/tiny/REVISION"
    targets = json.loads((tampered / "metadata/targets.json").read_text())["signed"]["targets"]
    blob = tampered / "targets/sha256" / targets[logical]["hashes"]["sha256"]
    blob.unlink()  # a new file: the delta media's hard-linked blob stays as it was
    blob.write_bytes(b"5\n")
    before = _host_installed(site, "gpu1")

    done = site.run(tampered, "upgrade")

    assert done.returncode != 0
    assert logical in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert site.installed()["version"] == "2026.11.1"
    assert _host_installed(site, "gpu1") == before
