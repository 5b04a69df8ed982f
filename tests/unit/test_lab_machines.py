"""The nspawn command line and finding machine processes, without starting any."""

from __future__ import annotations

from pathlib import Path

from appliance.lab.machines import find_machine_processes, log_tail, nspawn_argv
from appliance.lab.plan import plan_lab


def test_nspawn_command_line() -> None:
    machine = plan_lab(["ctrl1", "gpu1"]).machine("gpu1")
    argv = nspawn_argv(machine, Path("/state/machines/gpu1/root"))
    assert argv[0] == "systemd-nspawn"
    for option in (
        "--directory=/state/machines/gpu1/root",
        "--boot",
        "--machine=apl-gpu1",
        "--hostname=gpu1",
        "--register=no",
        "--keep-unit",
        "--network-namespace-path=/run/netns/apl-gpu1",
        "--capability=all",
        "--system-call-filter=keyctl add_key request_key",
        "--resolv-conf=off",
    ):
        assert option in argv
    # Nothing that would give the machine the host's network.
    assert not [a for a in argv if a.startswith(("--network-veth", "--network-bridge"))]


def _process(proc: Path, pid: int, argv: list[str], state: str = "S") -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (proc / str(pid) / "stat").write_text(f"{pid} ({Path(argv[0]).name}) {state} 1 2 3\n")


def test_finds_lab_machines_only(tmp_path: Path) -> None:
    netns = "--network-namespace-path=/run/netns/"
    _process(tmp_path, 10, ["systemd-nspawn", "-D", "/r", f"{netns}apl-ctrl1"])
    _process(tmp_path, 11, ["/usr/bin/systemd-nspawn", f"{netns}apl-gw1"])
    _process(tmp_path, 12, ["systemd-nspawn", f"{netns}other"])  # not the lab's
    _process(tmp_path, 13, ["systemd-nspawn", f"{netns}apl-gpu1"], state="Z")  # gone
    _process(tmp_path, 14, ["sleep", f"{netns}apl-gpu1"])
    (tmp_path / "self").mkdir()
    _process(tmp_path, 15, ["systemd-nspawn", f"{netns}apl2-gw1"])  # another lab's
    assert find_machine_processes(tmp_path) == {10: "apl-ctrl1", 11: "apl-gw1", 15: "apl2-gw1"}
    assert find_machine_processes(tmp_path, prefix="apl-") == {10: "apl-ctrl1", 11: "apl-gw1"}
    assert find_machine_processes(tmp_path, prefix="apl2-") == {15: "apl2-gw1"}


def test_issue14_machines_of_two_labs_have_distinct_nspawn_names() -> None:
    first = plan_lab(["ctrl1"], 0).machine("ctrl1")
    second = plan_lab(["ctrl1"], 1).machine("ctrl1")
    one, two = nspawn_argv(first, Path("/a")), nspawn_argv(second, Path("/b"))
    assert "--machine=apl-ctrl1" in one
    assert "--machine=apl1-ctrl1" in two
    assert "--network-namespace-path=/run/netns/apl1-ctrl1" in two
    assert "--hostname=ctrl1" in one
    assert "--hostname=ctrl1" in two


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("".join(f"line {i}\r\r\n\n" for i in range(40)))
    assert log_tail(log, 2) == "line 38\nline 39"
    assert "does not exist" in log_tail(tmp_path / "missing.log")
