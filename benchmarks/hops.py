"""CPU time of each process on the model path, read from /proc before and after a load.

Each lab machine is asked over SSH (its own pid namespace, its podman containers inside)
and the workstation is read directly. A process is named by the first of its ancestors
(itself included) whose command line says what it is, so vLLM's engine process counts as
vLLM and a container's process as its program, not as conmon. Processes that start and end
between the two readings are not seen: on the model path nothing does (the benchmark's
clients, which do, report their own CPU time).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

# Runs on each machine with its python3 (and here): {pid: [ppid, cpu seconds, cmdline]},
# for the processes in its own network namespace: the workstation sees the lab machines'
# processes too, and a machine's containers share its network (host networking).
_READ = r"""
import json, os
tick = os.sysconf("SC_CLK_TCK")
mine = os.stat("/proc/self/ns/net").st_ino
found = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino != mine:
            continue
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        continue
    found[pid] = [int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, cmdline]
print(json.dumps(found))
"""

#: What a command line says a process is, first match wins: (words it holds, name). A
#: container's ``podman run`` and conmon count with its program (their names are in it).
_NAMES = (
    (("tunnel", "proxy", "backend.json"), "backend proxy (ziti tunnel proxy)"),
    (("tunnel", "proxy"), "client proxy (ziti tunnel proxy)"),
    (("router", "run"), "router + tunneler"),
    (("controller", "run"), "controller"),
    (("access", "serve"), "access proxy"),
    (("llm-gateway",), "llm-gateway"),
    (("vllm",), "vLLM"),
)


@dataclass(frozen=True)
class Reading:
    """CPU seconds of each named process group on each machine at one moment."""

    seconds: dict[tuple[str, str], float]


def _name_of(cmdline: str) -> str | None:
    words = cmdline.split()
    for needles, name in _NAMES:
        if all(any(needle in word for word in words) for needle in needles):
            return name
    return None


def _group(processes: dict[str, list[object]]) -> dict[str, float]:
    """Sum CPU seconds by the name of each process's nearest named ancestor."""
    named: dict[str, str | None] = {}

    def name(pid: str, depth: int = 0) -> str | None:
        if pid in named:
            return named[pid]
        entry = processes.get(pid)
        if entry is None or depth > 64:
            return None
        found = _name_of(str(entry[2])) or name(str(entry[0]), depth + 1)
        named[pid] = found
        return found

    totals: dict[str, float] = {}
    for pid, entry in processes.items():
        group = name(pid)
        if group is not None:
            totals[group] = totals.get(group, 0.0) + float(entry[1])  # type: ignore[arg-type]
    return totals


def read(machines: dict[str, Callable[[str], list[str]]]) -> Reading:
    """One reading of every machine: ``machines`` maps a name to the argv that runs a
    command there (an SSH command line; the workstation's is ``sh -c``)."""
    seconds: dict[tuple[str, str], float] = {}
    command = f"python3 -c {shlex.quote(_READ)}"
    for machine, argv in machines.items():
        done = subprocess.run(
            argv(command), capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"could not read the processes of {machine}: {done.stderr.strip()}")
        for group, cpu in _group(json.loads(done.stdout)).items():
            seconds[(machine, group)] = cpu
    return Reading(seconds)


def spent(before: Reading, after: Reading) -> dict[tuple[str, str], float]:
    """CPU seconds each group used between two readings (groups seen in both)."""
    return {
        key: after.seconds[key] - before.seconds[key]
        for key in after.seconds
        if key in before.seconds and after.seconds[key] >= before.seconds[key]
    }


def table(used: dict[tuple[str, str], float], requests: int, tokens: int = 0) -> list[str]:
    """Lines: each hop's CPU per request (and per thousand streamed tokens), busiest first."""
    lines = [
        f"{'machine':<13}{'process':<36}{'CPU s':>8}{'ms/req':>9}"
        + (f"{'ms/1k tok':>11}" if tokens else "")
    ]
    for (machine, group), cpu in sorted(used.items(), key=lambda item: -item[1]):
        line = f"{machine:<13}{group:<36}{cpu:>8.2f}{1000 * cpu / max(requests, 1):>9.2f}"
        if tokens:
            line += f"{1e6 * cpu / tokens:>11.1f}"
        lines.append(line)
    total = sum(used.values())
    line = f"{'all':<13}{'':<36}{total:>8.2f}{1000 * total / max(requests, 1):>9.2f}"
    if tokens:
        line += f"{1e6 * total / tokens:>11.1f}"
    lines.append(line)
    return lines
