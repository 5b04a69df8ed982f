"""Starting, finding, waiting for and stopping the lab's systemd-nspawn machines.

There is no host systemd: machines run with ``--register=no --keep-unit`` as detached
processes in their own session, their console written to a log file. A machine is found
again by its nspawn process's command line (the network namespace it was given), so
``lab down`` stops machines that a killed ``lab up`` never got to record, and only those
of its own lab: the namespace's name starts with the lab's prefix. A machine whose nspawn
was killed keeps running without it (its systemd is reparented, not stopped): it is found
by the marker nspawn puts in its init's environment, and killed outright.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from appliance.errors import LabError
from appliance.lab.host import wait_until
from appliance.lab.network import NETNS_DIR
from appliance.lab.plan import Machine, index_of_link

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
#: In a machine's init's environment: its namespace's name.
MACHINE_MARKER = "APPLIANCE_LAB_MACHINE"
_NETNS_OPTION = "--network-namespace-path="


def nspawn_argv(machine: Machine, root: Path) -> list[str]:
    """The systemd-nspawn command line that boots ``machine`` from ``root``."""
    return [
        NSPAWN,
        f"--directory={root}",
        "--boot",
        # The machine name is global to the host (nspawn keeps /run/systemd/nspawn/*/NAME):
        # the namespace's name is unique among labs; the hostname is the host's own name.
        f"--machine={machine.namespace}",
        f"--hostname={machine.name}",
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
        # How `lab down` finds the machine should its nspawn be killed.
        f"--setenv={MACHINE_MARKER}={machine.namespace}",
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


def find_machine_processes(
    proc: Path = Path("/proc"), *, prefix: str | None = None
) -> dict[int, str]:
    """Every running lab machine: pid → namespace name.

    The pid is the machine's nspawn process or, for a machine whose nspawn is gone, the
    machine's own init. With ``prefix``, only the machines of the lab whose names start
    with it (``Slot.prefix``).
    """
    nspawns: dict[int, str] = {}
    inits: dict[int, tuple[str, int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = _cmdline(pid, proc)
        if argv and Path(argv[0]).name == NSPAWN:
            namespace = _namespace_of(argv)
            if namespace and not _is_zombie(pid, proc):
                nspawns[pid] = namespace
        elif (init := _machine_init(pid, proc)) is not None:
            inits[pid] = init
    found = dict(nspawns)
    # An init whose nspawn is alive is stopped through it.
    found |= {pid: ns for pid, (ns, parent) in inits.items() if parent not in nspawns}
    return {
        pid: namespace
        for pid, namespace in sorted(found.items())
        if index_of_link(namespace) is not None and (prefix is None or namespace.startswith(prefix))
    }


def stop_processes(pids: list[int], *, timeout: float) -> list[int]:
    """Stop machines; return the pids that had to be killed after ``timeout`` seconds.

    An nspawn gets SIGTERM (the machine powers off cleanly), SIGKILL if it is still there
    after ``timeout``. A machine's init whose nspawn is gone gets SIGKILL at once: nothing
    shuts it down cleanly without nspawn, and its files are deleted next. A pid that is
    already gone counts as stopped.
    """
    for pid in pids:
        if _is_nspawn(pid):
            _signal(pid, signal.SIGTERM)
        elif _machine_init(pid) is not None:
            _signal(pid, signal.SIGKILL)
    alive = wait_until(lambda: not [p for p in pids if _alive(p)], timeout=timeout)
    killed = [p for p in pids if _alive(p)] if not alive else []
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    if killed and not wait_until(lambda: not [p for p in killed if _alive(p)], timeout=30):
        left = [p for p in killed if _alive(p)]
        raise LabError(
            f"lab machine processes {left} survive SIGKILL",
            hint="look at them with `ps -o pid,stat,cmd -p PID`; run `appliance lab down` again",
        )
    return killed


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


def _namespace_of(argv: list[str]) -> str | None:
    for arg in argv:
        if arg.startswith(_NETNS_OPTION):
            return Path(arg.removeprefix(_NETNS_OPTION)).name
    return None


def _is_nspawn(pid: int) -> bool:
    argv = _cmdline(pid)
    return bool(argv) and Path(argv[0]).name == NSPAWN


def _machine_init(pid: int, proc: Path = Path("/proc")) -> tuple[str, int] | None:
    """(namespace, parent pid) when ``pid`` is a live lab machine's init, else None."""
    try:
        status = (proc / str(pid) / "status").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.partition(":")[::2] for line in status.splitlines())
    levels = fields.get("NSpid", "").split()
    # PID 1 of a PID namespace below ours, and not a zombie.
    state = fields.get("State", "").strip()
    if len(levels) < 2 or levels[-1] != "1" or state.startswith(("Z", "X")):
        return None
    try:
        environ = (proc / str(pid) / "environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    marker = f"{MACHINE_MARKER}=".encode()
    for variable in environ.split(b"\0"):
        if variable.startswith(marker):
            parent = fields.get("PPid", "").strip()
            namespace = variable.removeprefix(marker).decode("utf-8", "replace")
            return namespace, int(parent) if parent.isdigit() else 0
    return None


def _is_zombie(pid: int, proc: Path = Path("/proc")) -> bool:
    try:
        stat = (proc / str(pid) / "stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}
