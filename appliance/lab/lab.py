"""``lab up``, ``lab status`` and ``lab down``: the lab's life, step by step.

One lab per host: network names (``apl-*``) are global, so the site bridge records which
state directory owns them, and ``up`` refuses while any other lab's pieces are there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError, LabError, PrerequisiteError
from appliance.lab import machines as nspawn
from appliance.lab.files import locked, remove_tree
from appliance.lab.inventory import write_inventory
from appliance.lab.network import (
    create_network,
    network_owner,
    network_state,
    remove_network,
)
from appliance.lab.plan import DEFAULT_HOSTS, SITE_BRIDGE, LabPlan, plan_lab
from appliance.lab.rootfs import ensure_lab_rootfs, prepare_machine_root
from appliance.lab.ssh import generate_key, known_hosts_lines, write_known_hosts
from appliance.lab.state import (
    MAKING,
    UP,
    LabRecord,
    StateLayout,
    default_state_dir,
    read_record,
    write_record,
)
from appliance.settings import cache_dir

__all__ = ["DownReport", "LabStatus", "MachineStatus", "UpReport", "down", "status", "up"]

Progress = Callable[[str], None]

#: Program → the Debian package that provides it, for the "what to do" line.
_PROGRAMS = {
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "nft": "nftables",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "debootstrap": "debootstrap",
    "sysctl": "procps",
}
_DOWN_HINT = "run `appliance lab down{state}` first"


@dataclass(frozen=True)
class UpReport:
    """What ``up`` did: ``already_up`` when it found the lab running and changed nothing."""

    state: Path
    plan: LabPlan
    inventory: Path
    already_up: bool


@dataclass(frozen=True)
class MachineStatus:
    """One row of ``lab status``."""

    name: str
    address: str
    namespace: str
    pid: int | None
    running: bool
    namespace_present: bool
    ssh: bool

    @property
    def ok(self) -> bool:
        """True when the machine runs, has its namespace and answers SSH."""
        return self.running and self.namespace_present and self.ssh


@dataclass(frozen=True)
class LabStatus:
    """``lab status``: each machine, and what is wrong with the lab as a whole."""

    state: Path
    recorded: str
    machines: tuple[MachineStatus, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when the lab is up and every machine is well."""
        return not self.problems and all(m.ok for m in self.machines)


@dataclass(frozen=True)
class DownReport:
    """What ``down`` removed."""

    state: Path
    stopped: tuple[str, ...]
    killed: tuple[str, ...]
    namespaces: tuple[str, ...]
    links: tuple[str, ...]
    firewall: bool
    state_removed: bool

    @property
    def nothing(self) -> bool:
        """True when there was no lab to remove."""
        return not (
            self.stopped or self.namespaces or self.links or self.firewall or self.state_removed
        )


def up(
    hosts: tuple[str, ...] | list[str] = DEFAULT_HOSTS,
    state: Path | None = None,
    *,
    progress: Progress | None = None,
    boot_timeout: float = 180,
) -> UpReport:
    """Make the lab: base root filesystem, machines, network, boot, inventory.

    On a lab already up with the same hosts, changes nothing. Refuses (LabError, hint: run
    ``lab down``) when any piece of a lab is already on the host but the lab is not up.
    """
    say = progress or (lambda _msg: None)
    plan = plan_lab(list(hosts))
    layout = StateLayout(_absolute(state))
    _require_root_and_programs()
    with locked(_lock_path()):
        existing = read_record(layout)
        if existing is not None:
            return _already_up(layout, existing, plan)
        _refuse_leftovers(layout)
        _refuse_foreign_directory(layout)
        base = ensure_lab_rootfs(say)
        step = "writing the lab record"
        try:
            layout.root.mkdir(parents=True, exist_ok=True)
            record = LabRecord(hosts=plan.names)
            write_record(layout, record)

            step = "preparing machine root filesystems"
            say(f"{step} ({', '.join(plan.names)})")
            public_key = generate_key(layout.ssh.key)
            known: list[str] = []
            for machine in plan.machines:
                root = layout.machine_root(machine.name)
                prepare_machine_root(base, root, machine, plan, public_key)
                known += known_hosts_lines(machine, root)
            write_known_hosts(layout.ssh.known_hosts, known)

            step = "making the network"
            say(step)
            create_network(plan, layout.root)

            step = "starting machines"
            say(step)
            for machine in plan.machines:
                log = layout.machine_log(machine.name)
                record.pids[machine.name] = nspawn.start_machine(
                    machine, layout.machine_root(machine.name), log
                )
                write_record(layout, record)

            step = "waiting for SSH"
            say(step)
            for machine in plan.machines:
                _wait_for_ssh(layout, machine.name, plan, record, boot_timeout)

            write_inventory(layout.inventory, plan, layout.ssh)
            record.status = UP
            write_record(layout, record)
        except KeyboardInterrupt as exc:
            # The machines run in sessions of their own: Ctrl-C leaves them up.
            raise LabError(
                f"lab up was interrupted while {step}; the lab at {layout.root} is half made",
                hint=_DOWN_HINT.format(state=_state_option(layout)),
            ) from exc
        except ApplianceError as exc:
            if isinstance(exc, LabError):
                raise
            raise LabError(
                f"lab up failed while {step}: {exc}",
                hint=f"{_DOWN_HINT.format(state=_state_option(layout))} to remove the "
                "half-made lab, then try again",
            ) from exc
    return UpReport(layout.root, plan, layout.inventory, already_up=False)


def status(state: Path | None = None, *, ssh_timeout: float = 10) -> LabStatus:
    """Check each machine of the lab (process, namespace, SSH) and the network."""
    layout = StateLayout(_absolute(state))
    record = read_record(layout)
    if record is None:
        raise LabError(
            f"there is no lab at {layout.root}",
            hint=f"run `appliance lab up{_state_option(layout)}`",
        )
    plan = record.plan
    net = network_state()
    problems = []
    if record.status != UP:
        problems.append(f"the lab is half made (status {record.status!r})")
    owner = network_owner()
    if owner is None:
        problems.append(f"the lab network (bridge {SITE_BRIDGE}) is missing")
    elif owner != str(layout.root):
        problems.append(f"the lab network was made for {owner or 'no lab state directory'}")
    if not net.firewall:
        problems.append("the firewall table inet appliance_lab is missing")
    if plan.vendor.namespace not in net.namespaces:
        problems.append(f"the vendor namespace {plan.vendor.namespace} is missing")
    rows = []
    for machine in plan.machines:
        pid = record.pids.get(machine.name)
        running = pid is not None and nspawn.is_machine_process(pid, machine)
        rows.append(
            MachineStatus(
                name=machine.name,
                address=machine.site_address,
                namespace=machine.namespace,
                pid=pid,
                running=running,
                namespace_present=machine.namespace in net.namespaces,
                ssh=running and layout.ssh.answers(machine.site_address, timeout=ssh_timeout),
            )
        )
    return LabStatus(layout.root, record.status, tuple(rows), tuple(problems))


def down(state: Path | None = None, *, stop_timeout: float = 60) -> DownReport:
    """Stop the machines and remove namespaces, links, firewall table and the state dir.

    Works from what is on the host, not only from ``lab.json``: a lab whose ``up`` was
    killed at any point is removed too. The cached base root filesystem is kept.
    """
    layout = StateLayout(_absolute(state))
    with locked(_lock_path()):
        owner = network_owner()
        if owner and owner != str(layout.root):
            raise LabError(
                f"the lab on this host belongs to {owner}, not {layout.root}",
                hint=f"run `appliance lab down --state {owner}`",
            )
        _refuse_foreign_directory(layout)
        processes = nspawn.find_machine_processes()
        killed = nspawn.stop_processes(sorted(processes), timeout=stop_timeout)
        removed = remove_network()
        state_removed = layout.root.exists()
        remove_tree(layout.root)
    name_of = {pid: namespace.removeprefix("apl-") for pid, namespace in processes.items()}
    return DownReport(
        state=layout.root,
        stopped=tuple(sorted(name_of.values())),
        killed=tuple(sorted(name_of[p] for p in killed)),
        namespaces=removed.namespaces,
        links=removed.links,
        firewall=removed.firewall,
        state_removed=state_removed,
    )


def _already_up(layout: StateLayout, record: LabRecord, plan: LabPlan) -> UpReport:
    if record.status == MAKING:
        raise LabError(
            f"the lab at {layout.root} is half made (an earlier `lab up` did not finish)",
            hint=_DOWN_HINT.format(state=_state_option(layout)),
        )
    if record.plan != plan:
        raise LabError(
            f"the lab at {layout.root} is up with hosts {', '.join(record.hosts)}, "
            f"not {', '.join(plan.names)}",
            hint=_DOWN_HINT.format(state=_state_option(layout)) + " to change its hosts",
        )
    current = status(layout.root)
    if not current.ok:
        wrong = list(current.problems) + [
            f"{m.name}: {'no SSH' if m.running else 'not running'}"
            for m in current.machines
            if not m.ok
        ]
        raise LabError(
            f"the lab at {layout.root} is recorded up but is not well: {'; '.join(wrong)}",
            hint=_DOWN_HINT.format(state=_state_option(layout)) + ", then `appliance lab up`",
        )
    return UpReport(layout.root, plan, layout.inventory, already_up=True)


def _refuse_leftovers(layout: StateLayout) -> None:
    owner = network_owner()
    net = network_state()
    processes = nspawn.find_machine_processes()
    if owner is None and net.empty and not processes:
        return
    where = f" --state {owner}" if owner else ""
    found = [*net.namespaces, *net.links] + (
        ["nft table inet appliance_lab"] if net.firewall else []
    )
    found += [f"nspawn pid {pid}" for pid in sorted(processes)]
    raise LabError(
        f"pieces of another lab are on this host"
        f"{f' (made for {owner})' if owner else ''}: {', '.join(found)}",
        hint=_DOWN_HINT.format(state=where),
    )


def _refuse_foreign_directory(layout: StateLayout) -> None:
    """Never adopt or delete a directory that is not a lab's (``--state ~`` by mistake)."""
    if not layout.root.exists():
        return
    if not layout.root.is_dir():
        raise LabError(
            f"the lab state path {layout.root} is not a directory", hint="use --state DIR"
        )
    foreign = sorted(p.name for p in layout.root.iterdir() if not layout.is_lab_file(p.name))
    if foreign:
        raise LabError(
            f"{layout.root} holds files that are not the lab's ({', '.join(foreign[:5])}); "
            "it is not touched",
            hint="give --state a new directory, or one a lab made",
        )


def _wait_for_ssh(
    layout: StateLayout, name: str, plan: LabPlan, record: LabRecord, timeout: float
) -> None:
    machine = plan.machine(name)
    pid = record.pids[name]
    log = layout.machine_log(name)
    died = False

    def ready() -> bool:
        nonlocal died
        if not nspawn.is_machine_process(pid, machine):
            died = True
            return True
        return layout.ssh.answers(machine.site_address, timeout=5)

    answered = nspawn.wait_until(ready, timeout=timeout, interval=1)
    if died or not answered:
        what = "stopped while booting" if died else f"did not answer SSH within {timeout:.0f} s"
        raise LabError(
            f"lab machine {name} ({machine.site_address}) {what}; last lines of {log}:\n"
            f"{nspawn.log_tail(log)}",
            hint=f"read {log}; {_DOWN_HINT.format(state=_state_option(layout))} "
            "to remove the half-made lab",
        )


def _require_root_and_programs() -> None:
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the lab needs root (network namespaces, bridges, nspawn machines)",
            hint="run it as root",
        )
    for program, package in _PROGRAMS.items():
        if shutil.which(program) is None:
            raise PrerequisiteError(
                f"`{program}` is not installed on this machine",
                hint=f"install {package} (`make setup` installs everything the lab needs)",
            )


def _absolute(state: Path | None) -> Path:
    return (state or default_state_dir()).expanduser().absolute()


def _state_option(layout: StateLayout) -> str:
    return "" if layout.root == default_state_dir() else f" --state {layout.root}"


def _lock_path() -> Path:
    # One lab per host (network names are global), so one lock for every state dir.
    return cache_dir() / "lab" / ".lock"
