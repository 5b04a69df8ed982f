"""``lab up`` and ``lab status`` (``lab down`` is in ``teardown``): a lab's life, step by step.

Labs are named (``default`` for the demo, ``test`` for the test tier) and several can be
up at once: each has its own state directory and its own number on the host, which
gives it its own namespaces, links, addresses and firewall table (``plan.Slot``). ``up``
takes the number and makes the network under the host's network lock, so two labs
coming up at once never take the same one; the rest (root filesystems, boot) runs
under the lab's own lock only.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.cache import ledger
from appliance.errors import ApplianceError, LabError, PrerequisiteError
from appliance.lab import machines as nspawn
from appliance.lab.files import locked
from appliance.lab.inventory import write_inventory
from appliance.lab.labs import LabOnHost, find_lab, free_slot, labs_on_host
from appliance.lab.locate import (
    LabRef,
    host_lock,
    lab_lock,
    locate,
    read_own_record,
    refuse_foreign_directory,
)
from appliance.lab.network import create_network
from appliance.lab.plan import DEFAULT_HOSTS, LabPlan, Slot, plan_lab
from appliance.lab.rootfs import ensure_lab_rootfs, prepare_machine_root
from appliance.lab.ssh import generate_key, known_hosts_lines, write_known_hosts
from appliance.lab.state import MAKING, REMOVING, UP, LabRecord, write_record
from appliance.lab.teardown import remove_lab

__all__ = ["LabStatus", "MachineStatus", "UpReport", "reboot", "status", "up"]

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


@dataclass(frozen=True)
class UpReport:
    """What ``up`` did: ``already_up`` when it found the lab running and changed nothing."""

    name: str
    state: Path
    plan: LabPlan
    inventory: Path
    already_up: bool
    #: True when it first finished a ``down`` of this lab that had been interrupted.
    finished_down: bool = False


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

    name: str
    state: Path
    recorded: str
    plan: LabPlan
    machines: tuple[MachineStatus, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when the lab is up and every machine is well."""
        return not self.problems and all(m.ok for m in self.machines)


def up(
    hosts: tuple[str, ...] | list[str] = DEFAULT_HOSTS,
    state: Path | None = None,
    *,
    name: str | None = None,
    progress: Progress | None = None,
    boot_timeout: float = 180,
) -> UpReport:
    """Make lab ``name`` (default: the demo's): base root filesystem, network, machines.

    On a lab already up with the same hosts, changes nothing. A ``down`` of this lab that
    was interrupted is finished first. Refuses (LabError, hint: run ``lab down``) a lab
    whose ``up`` did not finish, and a lab whose name another lab on the host holds.
    Other labs on the host are left as they are.
    """
    say = progress or (lambda _msg: None)
    hosts = tuple(hosts)
    plan_lab(hosts)  # a bad list of names is refused before anything is looked at
    _require_root_and_programs()
    lab = locate(name, state)
    with locked(lab_lock(lab.name)):
        existing = read_own_record(lab)
        finished_down = existing is not None and existing.status == REMOVING
        if existing is not None and existing.status == REMOVING:
            say(f"finishing the `lab down` of {lab.name} that was interrupted")
            remove_lab(lab, existing, stop_timeout=60)
        elif existing is not None:
            return _already_up(lab, existing, hosts)
        refuse_foreign_directory(lab.layout)
        with ledger.using(lab.layout.root, "root filesystem"):  # kept while the lab exists
            base = ensure_lab_rootfs(say)
        step = "writing the lab record"
        try:
            with locked(host_lock()):
                slot = _take_number(lab, labs_on_host())
                plan = plan_lab(hosts, slot.index)
                lab.layout.root.mkdir(parents=True, exist_ok=True)
                record = LabRecord(hosts=plan.names, name=lab.name, index=slot.index)
                write_record(lab.layout, record)

                step = "making the network"
                say(
                    f"{step}: lab {lab.name} is number {slot.index} "
                    f"({slot.site_network}, {slot.outside_network})"
                )
                create_network(plan, lab.owner)

            step = "preparing machine root filesystems"
            say(f"{step} ({', '.join(plan.names)})")
            public_key = generate_key(lab.layout.ssh.key)
            known: list[str] = []
            for machine in plan.machines:
                root = lab.layout.machine_root(machine.name)
                prepare_machine_root(base, root, machine, plan, public_key)
                known += known_hosts_lines(machine, root)
            write_known_hosts(lab.layout.ssh.known_hosts, known)

            step = "starting machines"
            say(step)
            for machine in plan.machines:
                log = lab.layout.machine_log(machine.name)
                record.pids[machine.name] = nspawn.start_machine(
                    machine, lab.layout.machine_root(machine.name), log
                )
                write_record(lab.layout, record)

            step = "waiting for SSH"
            say(step)
            for machine in plan.machines:
                _wait_for_ssh(lab, machine.name, plan, record, boot_timeout)

            write_inventory(lab.layout.inventory, plan, lab.layout.ssh)
            record.status = UP
            write_record(lab.layout, record)
        except KeyboardInterrupt as exc:
            # The machines run in sessions of their own: Ctrl-C leaves them up.
            raise LabError(
                f"lab up of {lab.name} was interrupted while {step}; the lab at "
                f"{lab.layout.root} is half made",
                hint=lab.down_hint(),
            ) from exc
        except ApplianceError as exc:
            if isinstance(exc, LabError):
                raise
            raise LabError(
                f"lab up of {lab.name} failed while {step}: {exc}",
                hint=f"{lab.down_hint()} to remove the half-made lab, then try again",
            ) from exc
    return UpReport(
        lab.name, lab.layout.root, plan, lab.layout.inventory, False, finished_down=finished_down
    )


def status(
    state: Path | None = None, *, name: str | None = None, ssh_timeout: float = 10
) -> LabStatus:
    """Check each machine of lab ``name`` (process, namespace, SSH) and its network."""
    lab = locate(name, state)
    record = read_own_record(lab)
    if record is None:
        raise LabError(
            f"there is no lab {lab.name} at {lab.layout.root}",
            hint=f"run `appliance lab up{lab.option()}`",
        )
    plan = record.plan
    slot = plan.slot
    here = labs_on_host().get(slot.index) or LabOnHost(slot, None)
    net = here.network
    problems = []
    if record.status == MAKING:
        problems.append("the lab is half made (an earlier `lab up` did not finish)")
    elif record.status == REMOVING:
        problems.append("the lab is half removed (an earlier `lab down` did not finish)")
    if slot.site_bridge not in net.links:
        problems.append(f"the lab network (bridge {slot.site_bridge}) is missing")
    elif here.owner != lab.owner:
        made = here.owner.describe() if here.owner else "no lab (the bridge has no tag)"
        problems.append(f"the lab network {slot.site_bridge} was made for {made}")
    if net.firewall is None:
        problems.append(f"the firewall table inet {slot.nft_table} is missing")
    if plan.vendor.namespace not in net.namespaces:
        problems.append(f"the vendor namespace {plan.vendor.namespace} is missing")
    for machine in plan.machines:
        if machine.outside_address and machine.outside_veth not in net.links:
            # A lab made by a release that gave this host no outside leg, or a lost link.
            problems.append(f"{machine.name}'s outside leg {machine.outside_veth} is missing")
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
                ssh=running and lab.layout.ssh.answers(machine.site_address, timeout=ssh_timeout),
            )
        )
    return LabStatus(lab.name, lab.layout.root, record.status, plan, tuple(rows), tuple(problems))


def reboot(
    host: str,
    state: Path | None = None,
    *,
    name: str | None = None,
    stop_timeout: float = 90,
    boot_timeout: float = 180,
) -> float:
    """Power machine ``host`` of lab ``name`` off cleanly and boot it again, as a site's
    host is rebooted; returns the seconds until it answered SSH again.

    Its network (namespace, links, addresses) stays, as a real host's cabling does; only
    what runs on it stops and starts. LabError when the lab is not up or the machine does
    not come back.
    """
    lab = locate(name, state)
    with locked(lab_lock(lab.name)):
        record = read_own_record(lab)
        if record is None or record.status != UP:
            raise LabError(
                f"lab {lab.name} at {lab.layout.root} is not up",
                hint=f"`appliance lab up{lab.option()}`",
            )
        plan = record.plan
        if host not in plan.names:
            raise LabError(
                f"lab {lab.name} has no machine {host}: expected one of {', '.join(plan.names)}"
            )
        machine = plan.machine(host)
        began = time.monotonic()
        pid = record.pids.get(host)
        if pid is not None and nspawn.is_machine_process(pid, machine):
            nspawn.stop_processes([pid], timeout=stop_timeout)
        record.pids[host] = nspawn.start_machine(
            machine, lab.layout.machine_root(host), lab.layout.machine_log(host)
        )
        write_record(lab.layout, record)
        _wait_for_ssh(lab, host, plan, record, boot_timeout)
        return time.monotonic() - began


def _take_number(lab: LabRef, on_host: dict[int, LabOnHost]) -> Slot:
    """The lab number for ``lab``; LabError when its name or number is held on the host."""
    same = find_lab(on_host, lab.name)
    if same is not None and same.owner == lab.owner:
        raise LabError(
            f"pieces of lab {lab.name} are on this host but its record at {lab.layout.root} "
            f"is missing: {', '.join(same.pieces)}",
            hint=lab.down_hint(),
        )
    if same is not None:
        raise LabError(
            f"another lab named {lab.name} is on this host: {same.describe()}; this one's "
            f"state would be {lab.layout.root}",
            hint=f"take it down (`appliance lab down {lab.name}`) or give this lab another name",
        )
    slot = free_slot(on_host, lab.name)
    there = on_host.get(slot.index)
    if there is not None:
        raise LabError(
            f"pieces of {there.describe()} are on this host where lab {lab.name} goes: "
            f"{', '.join(there.pieces)}",
            hint=lab.down_hint(),
        )
    return slot


def _already_up(lab: LabRef, record: LabRecord, hosts: tuple[str, ...]) -> UpReport:
    if record.status == MAKING:
        raise LabError(
            f"the lab {lab.name} at {lab.layout.root} is half made (an earlier `lab up` "
            "did not finish)",
            hint=lab.down_hint(),
        )
    if record.hosts != hosts:
        raise LabError(
            f"the lab {lab.name} at {lab.layout.root} is up with hosts "
            f"{', '.join(record.hosts)}, not {', '.join(hosts)}",
            hint=lab.down_hint() + " to change its hosts",
        )
    current = status(lab.layout.root, name=lab.name)
    if not current.ok:
        wrong = list(current.problems) + [
            f"{m.name}: {'no SSH' if m.running else 'not running'}"
            for m in current.machines
            if not m.ok
        ]
        raise LabError(
            f"the lab {lab.name} at {lab.layout.root} is recorded up but is not well: "
            f"{'; '.join(wrong)}",
            hint=lab.down_hint() + f", then `appliance lab up{lab.option()}`",
        )
    return UpReport(lab.name, lab.layout.root, record.plan, lab.layout.inventory, True)


def _wait_for_ssh(lab: LabRef, name: str, plan: LabPlan, record: LabRecord, timeout: float) -> None:
    machine = plan.machine(name)
    pid = record.pids[name]
    log = lab.layout.machine_log(name)
    died = False

    def ready() -> bool:
        nonlocal died
        if not nspawn.is_machine_process(pid, machine):
            died = True
            return True
        return lab.layout.ssh.answers(machine.site_address, timeout=5)

    answered = nspawn.wait_until(ready, timeout=timeout, interval=1)
    if died or not answered:
        what = "stopped while booting" if died else f"did not answer SSH within {timeout:.0f} s"
        raise LabError(
            f"lab machine {name} ({machine.site_address}) of lab {lab.name} {what}; last "
            f"lines of {log}:\n{nspawn.log_tail(log)}",
            hint=f"read {log}; {lab.down_hint()} to remove the half-made lab",
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
