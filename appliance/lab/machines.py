"""Starting, finding, waiting for and stopping the lab's systemd-nspawn machines.

There is no host systemd: machines run with ``--register=no --keep-unit`` as detached
processes in their own session, their console written to a log file. A machine is found
again by its nspawn process's command line (the network namespace it was given), so
``lab down`` stops machines that a killed ``lab up`` never got to record.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from appliance.errors import LabError
from appliance.lab.network import NETNS_DIR
from appliance.lab.plan import LINK_PREFIX, Machine

__all__ = [
    "find_machine_processes",
    "is_machine_process",
    "log_tail",
    "nspawn_argv",
    "start_machine",
    "stop_processes",
    "wait_until",
]

NSPAWN = "systemd-nspawn"
_NETNS_OPTION = "--network-namespace-path="


def nspawn_argv(machine: Machine, root: Path) -> list[str]:
    """The systemd-nspawn command line that boots ``machine`` from ``root``."""
    return [
        NSPAWN,
        f"--directory={root}",
        "--boot",
        f"--machine={machine.name}",
        # No host systemd to register with or to make a scope unit for us.
        "--register=no",
        "--keep-unit",
        f"{_NETNS_OPTION}{NETNS_DIR / machine.namespace}",
        # Podman inside the machine needs every capability and the keyring calls (LAB.md).
        "--capability=all",
        "--system-call-filter=keyctl add_key request_key",
        # The console goes to our log file; nothing of the build machine leaks in.
        "--console=read-only",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
    ]


def start_machine(machine: Machine, root: Path, log: Path) -> int:
    """Start ``machine`` detached (own session, console to ``log``) and return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        # systemd in the machine colours its console only for a capable terminal.
        "TERM": "dumb",
        "SYSTEMD_COLORS": "0",
    }
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        return os.posix_spawnp(
            NSPAWN, nspawn_argv(machine, root), env, file_actions=actions, setsid=True
        )
    except FileNotFoundError as exc:
        raise LabError(
            f"cannot start machine {machine.name}: {NSPAWN} is not installed",
            hint="install systemd-container (`make setup`)",
        ) from exc


def is_machine_process(pid: int, machine: Machine) -> bool:
    """Whether ``pid`` is a live (not zombie) nspawn process running ``machine``."""
    argv = _cmdline(pid)
    return (
        bool(argv)
        and Path(argv[0]).name == NSPAWN
        and f"{_NETNS_OPTION}{NETNS_DIR / machine.namespace}" in argv
        and not _is_zombie(pid)
    )


def find_machine_processes(proc: Path = Path("/proc")) -> dict[int, str]:
    """Every live nspawn process on a lab namespace: pid → namespace name."""
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = _cmdline(pid, proc)
        if not argv or Path(argv[0]).name != NSPAWN or _is_zombie(pid, proc):
            continue
        for arg in argv:
            if arg.startswith(_NETNS_OPTION):
                namespace = Path(arg.removeprefix(_NETNS_OPTION)).name
                if namespace.startswith(LINK_PREFIX):
                    found[pid] = namespace
    return found


def stop_processes(pids: list[int], *, timeout: float) -> list[int]:
    """SIGTERM each nspawn (the machine powers off cleanly), SIGKILL what is left after
    ``timeout`` seconds; return the pids that had to be killed."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    alive = wait_until(lambda: not [p for p in pids if _alive(p)], timeout=timeout)
    killed = [p for p in pids if _alive(p)] if not alive else []
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    if killed and not wait_until(lambda: not [p for p in killed if _alive(p)], timeout=30):
        left = [p for p in killed if _alive(p)]
        raise LabError(
            f"nspawn processes {left} survive SIGKILL",
            hint="look at them with `ps -o pid,stat,cmd -p PID`; run `appliance lab down` again",
        )
    return killed


def wait_until(done: Callable[[], bool], *, timeout: float, interval: float = 0.5) -> bool:
    """Poll ``done`` until it returns True (→ True) or ``timeout`` seconds pass (→ False)."""
    deadline = time.monotonic() + timeout
    while True:
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(log: Path, lines: int = 15) -> str:
    """The last lines of a machine's console log, for error messages."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"({log} does not exist)"
    # The console writes CR LF, often twice: keep the lines that say something.
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def _reap(pid: int) -> None:
    # When this process started the machine, it is the one that must collect its status.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _cmdline(pid: int, proc: Path = Path("/proc")) -> list[str]:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return raw.decode("utf-8", errors="replace").rstrip("\0").split("\0") if raw else []


def _is_zombie(pid: int, proc: Path = Path("/proc")) -> bool:
    try:
        stat = (proc / str(pid) / "stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}
