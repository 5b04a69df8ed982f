"""Faults of the admin host alone: its disk filled, its clock stepped (issue 29's soak).

The lab's machines share this machine's disk and its kernel clock: filling the one or
stepping the other would do it to every host, and to the test itself. So each fault is
confined to what the admin host keeps and runs:

* **Disk.** Before the load starts, the admin's data folder (its database, audit log and
  recordings) moves onto a small file system of its own (tmpfs, sized to what it holds
  plus room to work). The fault fills that file system to the last byte, then frees it.
* **Clock.** Before the load starts, the admin service and the break-glass reaper are
  started again with ``clockstep.c`` preloaded (built here; a systemd drop-in adds it to
  their podman command). It reads the offset from a file, so the fault steps their wall
  clock without a restart, as a step of the host's clock would; the monotonic and boot
  clocks and every sleep stay true, as they do when a host's clock is stepped. The
  kernel's own clock (the gate's ``meta time``) is the lab machine's and is not stepped.

Both preparations restart the units that use the admin's data folder, so they run before
the load and the window begin.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from appliance.lab.state import StateLayout
from tests.lab.overlay_site import Site
from tests.lab.support import ssh

__all__ = ["ADMIN_DATA", "clock_adjustable", "fill_disk", "free_disk", "small_disk", "step_clock"]

ADMIN_DATA = "/var/lib/appliance-admin"
FILLER = f"{ADMIN_DATA}/soak-filler"
#: Room above what the admin's data folder holds when it moves onto its own disk.
DISK_ROOM_MIB = 96
#: The wall-clock shim, built with this machine's gcc (the lab machines and the images
#: run the same Debian release, so the same C library).
CLOCKSTEP_SOURCE = Path(__file__).with_name("clockstep.c")
#: On the admin host: the library and the offset file (a folder of the machine's root,
#: not /run, so that the host can write it into the machine's tree).
CLOCK_DIR = "/var/lib/soak-clock"
#: The units that run with the admin's folder mounted, as their unit files say.
_USERS_OF_DATA = (
    f"grep -l -- '--volume {ADMIN_DATA}:' /etc/systemd/system/appliance-*.service "
    "| xargs -n1 basename"
)


def _on(site: Site, command: str, timeout: float = 180) -> str:
    done = ssh(site.lab, site.address["ctrl1"], command, timeout=timeout)
    assert done.returncode == 0, f"ctrl1: {command}: {done.stdout}{done.stderr}"
    return done.stdout


def _restarting_data_users(site: Site, between: str) -> None:
    """Stop every unit using the admin's data folder, run ``between``, start them again."""
    _on(
        site,
        f"set -e; units=$({_USERS_OF_DATA}); systemctl stop $units; {between}; "
        "systemctl start $units",
    )


def small_disk(site: Site) -> int:
    """The admin's data folder on a file system of its own; its size in MiB."""
    used = int(_on(site, f"du -sm {ADMIN_DATA} | cut -f1").strip())
    size = used + DISK_ROOM_MIB
    _restarting_data_users(
        site,
        f"cp -a {ADMIN_DATA} {ADMIN_DATA}.before; "
        f"mount -t tmpfs -o size={size}m,mode=0700 soak-admin-disk {ADMIN_DATA}; "
        f"cp -a {ADMIN_DATA}.before/. {ADMIN_DATA}/; rm -rf {ADMIN_DATA}.before",
    )
    return size


def fill_disk(site: Site) -> str:
    """Fill the admin's file system to its last byte; what `df` says then."""
    _on(
        site,
        f"fallocate -l $(( $(stat -f -c '%a * %S' {ADMIN_DATA}) )) {FILLER}; "
        f"dd if=/dev/zero of={FILLER}-rest bs=4k status=none 2>/dev/null || true",
    )
    return _on(site, f"df -h --output=size,avail {ADMIN_DATA} | tail -1").strip()


def free_disk(site: Site) -> None:
    _on(site, f"rm -f {FILLER} {FILLER}-rest")


def clock_adjustable(site: Site) -> None:
    """The admin service and the reaper run on a wall clock the test can step."""
    root = StateLayout(site.lab).machine_root("ctrl1")
    folder = root / CLOCK_DIR.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    built = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(folder / "clockstep.so"),
         str(CLOCKSTEP_SOURCE), "-ldl"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, f"gcc could not build the clock shim: {built.stderr}"
    (folder / "offset").write_text("+0\n", encoding="ascii")
    preload = (
        f"--volume {CLOCK_DIR}:{CLOCK_DIR}:ro "
        f"--env LD_PRELOAD={CLOCK_DIR}/clockstep.so --env CLOCKSTEP_FILE={CLOCK_DIR}/offset "
    )
    units = _on(site, _USERS_OF_DATA).split()
    assert units, "no unit mounts the admin's data folder"
    for unit in units:
        text = (root / "etc/systemd/system" / unit).read_text(encoding="utf-8")
        found = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", text, re.MULTILINE)
        assert found and "podman run " in found.group(1), f"{unit}: no podman run to extend"
        command = found.group(1).replace("podman run ", f"podman run {preload}", 1)
        dropin = root / "etc/systemd/system" / f"{unit}.d"
        dropin.mkdir(exist_ok=True)
        (dropin / "soak-clock.conf").write_text(
            f"[Service]\nExecStart=\nExecStart={command}\n", encoding="utf-8"
        )
    _on(site, "systemctl daemon-reload; systemctl restart " + " ".join(units))


def step_clock(site: Site, offset_s: int) -> None:
    """The admin service's and the reaper's wall clock, ``offset_s`` from the true one."""
    _on(site, f"echo {shlex.quote(f'{offset_s:+d}')} > {CLOCK_DIR}/offset")
