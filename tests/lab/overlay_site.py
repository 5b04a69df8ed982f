"""The overlay lab's site as its tests drive it: the installer from lab media, the admin API
on ctrl1, and clients enrolled on the workstation that reach services through the overlay.

tests/lab/test_overlay_lab.py (one controller) and tests/lab/test_cluster_lab.py (a raft
cluster of three) both use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.lab import LabPlan, down, up
from appliance.lab.media import LabMedia, make_lab_media
from tests.integration.overlay import supplied_program, tunneler, wait_listening
from tests.lab.conftest import TEST_LAB
from tests.lab.support import REPO, admin_api, ssh

#: The components an overlay site installs (built once, from bundles/lab.yaml).
COMPONENTS = (
    "ziti-controller",
    "ziti-router",
    "llm-gateway",
    "vllm",
    "appliance-admin",
    "tiny-model",
)
ADMIN_PASSWORD = "the-overlay-admin-1"
#: Where a client's `ziti tunnel proxy` listens for each service: the service's proxy.v1
#: config decides (127.0.0.1 and this port), whatever port the command line names.
PROXY_PORTS = {"llm-gateway": 8080, "appliance-admin": 8443}


@dataclass
class Site:
    """A lab, its media, the installer's home and the workstation's ziti program."""

    lab: Path
    plan: LabPlan
    home: Path
    media: dict[str, LabMedia]
    work: Path
    ziti: Path
    #: Enrolled client identities and their gateway keys, by name, kept across tests.
    clients: dict[str, tuple[Path, str]] = field(default_factory=dict)

    @property
    def address(self) -> dict[str, str]:
        return {m.name: m.site_address for m in self.plan.machines}

    @property
    def outside(self) -> dict[str, str]:
        return {m.name: m.outside_address for m in self.plan.machines if m.outside_address}

    @property
    def site_dir(self) -> Path:
        return self.home / "site"

    def run(self, command: str, *args: str, media: str = "n") -> subprocess.CompletedProcess[str]:
        """install.sh from the media, as the installer runs it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
        env["APPLIANCE_INSTALLER_HOME"] = str(self.home)
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        argv = ["sh", str(self.media[media].path / "install.sh"), command]
        argv += ["--inventory", str(self.lab / "inventory.yml"), *args]
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=1800, check=False
        )


#: The version of a lab site's first media (media "n").
FIRST_VERSION = "2026.11.1"


@contextlib.contextmanager
def lab_site(
    work: Path,
    hosts: tuple[str, ...],
    *,
    more_media: Mapping[str, tuple[str, Path | None, str | None]] = {},
) -> Iterator[Site]:
    """Lab ``test`` of ``hosts`` and its media, for a module's tests; all removed after
    (kept, with its files, when APPLIANCE_LAB_KEEP=1, to read what a failure left).

    Media "n" holds :data:`COMPONENTS` at :data:`FIRST_VERSION`; ``more_media`` adds
    media by name: (version, model folder or None, model version or None).
    """
    media = {}
    for name, (version, model, revision) in {
        "n": (FIRST_VERSION, None, None),
        **more_media,
    }.items():
        media[name] = make_lab_media(
            work / name,
            work / "keys",
            definition=REPO / "bundles/lab.yaml",
            version=version,
            model=model,
            model_version=revision,
            only=COMPONENTS,
        )
    assert not [c for c in COMPONENTS if c not in media["n"].components], media["n"].left_out
    state = work / "lab"
    keep = os.environ.get("APPLIANCE_LAB_KEEP") == "1"
    try:
        lab = up(hosts, state, name=TEST_LAB)
        yield Site(state, lab.plan, work / "installer", media, work, supplied_program("ziti", work))
    finally:
        if keep:  # for a developer reading what a failed test left: down it by hand
            print(f"\nAPPLIANCE_LAB_KEEP=1: lab {TEST_LAB} kept at {state}")
        else:
            down(state)
            shutil.rmtree(work, ignore_errors=True)


def admin_calls(
    site: Site,
    calls: list[tuple[str, str, object]],
    *,
    password: str = ADMIN_PASSWORD,
    new_password: str | None = None,
    user: str = "admin",
) -> list[list[Any]]:
    """The admin API on ctrl1, where the service listens on loopback."""
    return admin_api(
        site.lab, site.address["ctrl1"], password, calls, new_password=new_password, user=user
    )


def admin_journal(site: Site, lines: int = 80) -> str:
    """The admin service's journal on ctrl1, for a failure's message."""
    said = ssh(
        site.lab,
        site.address["ctrl1"],
        f"journalctl -u appliance-admin --no-pager -n {lines} | grep -v podman",
    )
    return f"\nctrl1's admin service:\n{said.stdout}{said.stderr}"


def enroll_client(site: Site, jwt: str, name: str) -> Path:
    """Enroll ``jwt`` with the workstation's ziti program; the identity file ``name``.json."""
    (site.work / f"{name}.jwt").write_text(jwt)
    identity = site.work / f"{name}.json"
    done = subprocess.run(
        [str(site.ziti), "edge", "enroll", str(site.work / f"{name}.jwt"), "-o", str(identity)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return identity


@contextlib.contextmanager
def client_proxy(site: Site, identity: Path, service: str) -> Iterator[int]:
    """A `ziti tunnel proxy` on the workstation (outside every host) for ``service``."""
    port = PROXY_PORTS[service]
    log = site.work / f"{identity.stem}-{service}.log"
    with tunneler(site.ziti, log, "proxy", f"{service}:{port}", "-i", str(identity)) as proc:
        wait_listening(port, proc, timeout=90)
        yield port


def install_healthy(site: Site, checks: tuple[str, ...]) -> None:
    """A fresh install from the media; `install.sh status` then passes, listing ``checks``."""
    done = site.run("install", "--root-fingerprint", site.media["n"].root_fingerprint)
    assert done.returncode == 0, done.stdout + done.stderr
    status = site.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for check in checks:
        assert check in status.stdout, status.stdout
    assert "FAIL" not in status.stdout
    assert "overlay: not installed" not in status.stdout
