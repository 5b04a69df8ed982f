"""The lab machines' root filesystem: one cached debootstrap base, one copy per machine.

The base is built once per recipe under ``<cache>/lab/rootfs/<key>/`` (``root/`` plus a
``complete.json`` marker written last). It is built in a staging directory beside it and
renamed into place, so a build killed at any point never leaves a tree that looks done.
The key covers everything that shapes the tree: suite, variant, packages, the files we
write into it, the mirror and ``RECIPE_VERSION`` (bump it whenever the recipe changes).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from appliance._fsutil import atomic_write_json, fsync_dir, input_key
from appliance._process import run
from appliance.cache import ledger
from appliance.components.rootfs import debian_mirror
from appliance.lab.files import copy_tree, locked, remove_tree
from appliance.lab.plan import LabPlan, Machine
from appliance.settings import cache_dir

__all__ = [
    "PACKAGES",
    "RECIPE_VERSION",
    "SUITE",
    "ensure_lab_rootfs",
    "prepare_machine_root",
    "rootfs_key",
]

#: Bump when anything below changes how the tree is made; the key changes with it.
RECIPE_VERSION = "lab-rootfs/1"
SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = (
    # A bootable host that Ansible reaches over SSH.
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "openssh-sftp-server",
    "python3",
    # Podman as the roles run it (crun: runc fails on the machine's read-only cgroups).
    "podman",
    "crun",
    "conmon",
    "catatonit",
    "uidmap",
    "containernetworking-plugins",
    # What the roles and the tests use on a host.
    "nftables",
    "iproute2",
    "procps",
    "iputils-ping",
)

#: Podman inside an nspawn machine (LAB.md): no ulimits to raise, no kernel keyring, no
#: cgroups of its own (the machine's cgroup tree is read-only), and crun.
CONTAINERS_CONF = """\
# Written by appliance.lab: podman inside a systemd-nspawn lab machine.
[containers]
default_ulimits = []
keyring = false
cgroups = "disabled"

[engine]
runtime = "crun"
"""

SSHD_CONF = """\
# Written by appliance.lab: keys only, no DNS lookups of clients.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

RESOLV_CONF = "# The lab has no DNS: nothing outside the site resolves.\n"

_MARKER = "complete.json"

Progress = Callable[[str], None]


def rootfs_key(mirror: str) -> str:
    """Cache key of the base tree: every input that changes its content."""
    return input_key(
        RECIPE_VERSION,
        SUITE,
        VARIANT,
        sorted(PACKAGES),
        mirror,
        CONTAINERS_CONF,
        SSHD_CONF,
        RESOLV_CONF,
    )


def ensure_lab_rootfs(progress: Progress | None = None) -> Path:
    """Return the cached base root filesystem, building it first if needed (minutes)."""
    mirror = debian_mirror(SUITE)
    key = rootfs_key(mirror)
    entries = cache_dir() / "lab" / "rootfs"
    final = entries / key
    ledger.note(final)
    if (final / _MARKER).is_file():
        return final / "root"
    entries.mkdir(parents=True, exist_ok=True)
    with locked(entries / ".lock"):
        if (final / _MARKER).is_file():  # another process built it while we waited
            return final / "root"
        # Leftovers of killed builds: nobody else builds while we hold the lock.
        for stale in entries.glob(f".{key}.*.tmp"):
            remove_tree(stale)
        if final.exists():  # a tree without its marker is not a finished build
            remove_tree(final)
        if progress:
            progress(f"building the lab root filesystem {key} (debootstrap {SUITE}, minutes)")
        stage = entries / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            stage.mkdir()
            _debootstrap(mirror, stage / "root")
            atomic_write_json(
                stage / _MARKER,
                {"recipe": RECIPE_VERSION, "suite": SUITE, "packages": sorted(PACKAGES)},
            )
            os.replace(stage, final)
            fsync_dir(entries)
        finally:
            remove_tree(stage)
    return final / "root"


def prepare_machine_root(
    base: Path, root: Path, machine: Machine, plan: LabPlan, authorized_key: str
) -> None:
    """Copy the base tree to ``root`` and make it ``machine``'s own.

    Own hostname, machine id and SSH host keys (never shared between hosts: known_hosts
    must tell them apart), and the lab's installer key for root.
    """
    remove_tree(root)  # a copy left by a killed `lab up`
    copy_tree(base, root)
    etc = root / "etc"
    (etc / "hostname").write_text(f"{machine.name}\n", encoding="utf-8")
    hosts = ["127.0.0.1 localhost", f"127.0.1.1 {machine.name}"]
    hosts += [f"{m.site_address} {m.name}" for m in plan.machines if m != machine]
    (etc / "hosts").write_text("\n".join(hosts) + "\n", encoding="utf-8")
    (etc / "machine-id").write_text(f"{uuid.uuid4().hex}\n", encoding="utf-8")
    for old in (etc / "ssh").glob("ssh_host_*"):
        old.unlink()
    run(["ssh-keygen", "-A", "-f", root])
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    ssh_dir.chmod(0o700)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(authorized_key.strip() + "\n", encoding="utf-8")
    keys.chmod(0o600)


def _debootstrap(mirror: str, root: Path) -> None:
    run(
        [
            "debootstrap",
            f"--variant={VARIANT}",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            root,
            mirror,
        ]
    )
    # Behind the air gap: no package sources, no caches, no logs, no DNS from the build
    # machine, and no host keys or machine id that every copy would share.
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
        target = root / leftover
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir()
    (root / "var/cache/apt/archives/partial").mkdir()
    (root / "var/lib/apt/lists/partial").mkdir()
    (root / "etc/apt/sources.list").write_text("", encoding="utf-8")
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text(RESOLV_CONF, encoding="utf-8")
    (root / "etc/machine-id").write_text("", encoding="utf-8")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/containers/containers.conf").write_text(CONTAINERS_CONF, encoding="utf-8")
    (root / "etc/ssh/sshd_config.d/appliance-lab.conf").write_text(SSHD_CONF, encoding="utf-8")
