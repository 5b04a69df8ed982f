"""The gate's rules and the firewall's vendor leg agree on the mark that joins them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.breakglass.gate import PASSED_MARK, GateConfig, GateState, render_gate

FIREWALL = Path(__file__).resolve().parents[2] / "roles/firewall/templates/firewall.nft.j2"
CONFIG = GateConfig(("eth1",), (1280, 3023))


def test_an_open_gate_marks_what_it_lets_in_and_a_closed_one_marks_nothing() -> None:
    mark = f"meta mark set meta mark or {PASSED_MARK:#010x} accept"
    opened = render_gate(CONFIG, GateState(datetime.now(UTC) + timedelta(minutes=5), 300.0))
    assert [line.strip() for line in opened.splitlines() if mark in line] == [
        'iifname { "eth1" } tcp dport { 1280, 3023 } meta time < '
        + opened.split("meta time < ")[1].split()[0]
        + f" tcp dport @open {mark}"
    ]
    assert "meta mark" not in render_gate(CONFIG, GateState())


def test_the_firewall_takes_only_marked_packets_on_the_vendor_leg() -> None:
    rules = FIREWALL.read_text()
    assert f"meta mark & {PASSED_MARK:#010x} != {PASSED_MARK:#010x} drop" in rules
