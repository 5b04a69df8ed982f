"""Preflight: does every host meet what this install needs? Decided before anything changes.

The probes run as a read-only playbook (installer/preflight.yml) that hands back one
report per host; this module judges the reports. It is pure, so every rule is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from appliance.install.health import listening
from appliance.install.placement import PORTS, SECOND_PORTS, components_for, loopback_ports_for

__all__ = ["FipsMode", "HostCheck", "Requirements", "judge_host"]

FipsMode = Literal["strict", "on", "off"]

#: Operating systems the roles are written and tested for: (distribution, major version).
SUPPORTED_OS = {("Debian", "12")}


@dataclass(frozen=True)
class Requirements:
    """What a host must offer; sizes of what it will receive come from the bundle."""

    component_bytes: dict[str, int]  # component → bytes on media
    image_ids: dict[str, str]  # component → image id, to skip images a host already has
    fips: FipsMode = "on"
    min_vcpus: int = 2
    min_memory_mb: int = 1800
    min_gpu_memory_mb: int = 4000  # vLLM on a host of the gpu group (CPU or GPU)
    #: Images arrive compressed; podman keeps them unpacked (vLLM's is 3.5x), plus the copy.
    disk_factor: float = 5.0
    max_clock_skew_s: float = 30.0


@dataclass
class HostCheck:
    """One host's preflight: what was found, and every problem with what to do about it."""

    host: str
    found: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing stands in the way."""
        return not self.problems


def judge_host(host: str, report: dict[str, Any], need: Requirements) -> HostCheck:
    """Judge one host's preflight report against ``need``."""
    check = HostCheck(host)
    facts = report.get("msg")
    if not isinstance(facts, dict):
        check.problems.append("the preflight probes returned nothing: see the install log")
        return check
    groups = [str(g) for g in facts.get("groups", [])]
    _os(check, facts)
    _cpu_memory(check, facts, groups, need)
    _disk(check, facts, groups, need)
    _gpu(check, facts, groups)
    _fips(check, facts, need.fips)
    _clock(check, facts, report.get("_created"), need.max_clock_skew_s)
    _ports(check, facts, groups)
    if not str(facts.get("podman", "")).strip():
        check.problems.append(
            "podman is not installed: install the OS's podman package (the appliance runs "
            "every component as a podman container)"
        )
    return check


def _os(check: HostCheck, facts: dict[str, Any]) -> None:
    name, major = str(facts.get("os", "?")), str(facts.get("os_version", "?"))
    check.found["os"] = f"{name} {major} {facts.get('arch', '')}".strip()
    if (name, major) not in SUPPORTED_OS:
        wanted = ", ".join(f"{n} {v}" for n, v in sorted(SUPPORTED_OS))
        check.problems.append(f"runs {name} {major}; the roles support {wanted}")
    if facts.get("arch") not in (None, "x86_64"):
        check.problems.append(f"is {facts.get('arch')}; the bundle's images are for x86_64")


def _cpu_memory(
    check: HostCheck, facts: dict[str, Any], groups: list[str], need: Requirements
) -> None:
    vcpus, memory = int(facts.get("vcpus") or 0), int(facts.get("memory_mb") or 0)
    check.found["cpu"] = f"{vcpus} vCPU"
    check.found["memory"] = f"{memory / 1024:.1f} GiB"
    if vcpus < need.min_vcpus:
        check.problems.append(f"has {vcpus} vCPU; at least {need.min_vcpus} are needed")
    minimum = need.min_gpu_memory_mb if "gpu" in groups else need.min_memory_mb
    if memory < minimum:
        check.problems.append(
            f"has {memory} MB of memory; at least {minimum} MB are needed on this host"
        )


def _disk(check: HostCheck, facts: dict[str, Any], groups: list[str], need: Requirements) -> None:
    present = {str(i) for i in facts.get("image_ids", [])}
    wanted = 0
    for component in components_for(groups):
        if need.image_ids.get(component) and need.image_ids[component] in present:
            continue  # already loaded: an upgrade or rerun does not need its room again
        wanted += need.component_bytes.get(component, 0)
    required = int(wanted * need.disk_factor)
    free = int(facts.get("free_bytes") or 0)
    check.found["disk"] = f"{free / 2**30:.1f} GiB free, {required / 2**30:.1f} needed"
    if free < required:
        check.problems.append(
            f"has {free / 2**30:.1f} GiB free under /var/lib; the images it will receive need "
            f"{required / 2**30:.1f} GiB: free space there"
        )


def _gpu(check: HostCheck, facts: dict[str, Any], groups: list[str]) -> None:
    if "gpu" not in groups:
        return
    device = str(facts.get("vllm_device", "gpu"))
    if device == "cpu":
        check.found["gpu"] = "CPU vLLM (lab setting vllm_device: cpu)"
        return
    gpu = str(facts.get("gpu", "")).strip()
    if not gpu:
        check.found["gpu"] = "none"
        check.problems.append(
            "is in the gpu group but `nvidia-smi` finds no GPU or driver: install the NVIDIA "
            "driver and container toolkit, or (lab only) set vllm_device: cpu"
        )
    else:
        check.found["gpu"] = gpu.splitlines()[0]


def _fips(check: HostCheck, facts: dict[str, Any], mode: FipsMode) -> None:
    kernel = str(facts.get("fips_enabled", "")).strip()
    state = {"1": "on", "0": "off"}.get(kernel, "unknown")
    check.found["fips"] = f"kernel {state}"
    if mode == "strict" and state != "on":
        check.problems.append(
            f"kernel FIPS mode is {state}; --fips strict needs it on (boot with fips=1 on an "
            "OS with a validated kernel module), or install with --fips on"
        )


def _clock(check: HostCheck, facts: dict[str, Any], created: object, limit: float) -> None:
    try:
        host_time = float(facts["epoch"])
        seen = datetime.fromisoformat(str(created)).replace(tzinfo=UTC).timestamp()
    except (KeyError, TypeError, ValueError):
        check.found["clock"] = "unknown"
        check.problems.append("its clock could not be read")
        return
    skew = host_time - seen
    check.found["clock"] = f"{skew:+.1f} s"
    if abs(skew) > limit:
        check.problems.append(
            f"its clock is {skew:+.0f} s off the installer's (at most {limit:.0f} s): set the "
            "time (the site's NTP server, or `date -s`); certificates and windows depend on it"
        )


def _ports(check: HostCheck, facts: dict[str, Any], groups: list[str]) -> None:
    active = {str(u).removesuffix(".service") for u in facts.get("active_units", [])}
    taken: dict[int, str] = {}
    for local, port, owner in listening(facts.get("listening", [])):
        taken.setdefault(port, owner or local)
    # A group whose units already run here (a rerun or an upgrade) holds its own ports, also
    # those that moved from one of its units to another between versions (8080 went from
    # llm-gateway to the access proxy): another program there is not ours to judge.
    ours = set(active)
    for group in groups:
        units = {*PORTS.get(group, {}), *SECOND_PORTS.get(group, {}).values()}
        if units & active:
            ours |= units
    busy = []
    for port, unit in loopback_ports_for(groups).items():
        if port in taken and unit not in ours:
            busy.append(port)
            check.problems.append(
                f"port {port} (for {unit}) is taken by {taken[port]}: stop that service"
            )
    check.found["ports"] = "free" if not busy else "busy: " + ", ".join(map(str, busy))
