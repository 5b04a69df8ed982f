"""The lab's address plan: one source for every name and address, checked without processes."""

from __future__ import annotations

import pytest

from appliance.errors import LabError
from appliance.lab.plan import group_of, plan_lab


def test_default_hosts_get_the_documented_addresses() -> None:
    plan = plan_lab(["ctrl1", "gw1", "gpu1"])
    rows = [(m.name, m.group, m.site_address, m.outside_address) for m in plan.machines]
    assert rows == [
        ("ctrl1", "controller", "10.231.0.10", None),
        ("gw1", "gateway", "10.231.0.11", "10.231.1.2"),
        ("gpu1", "gpu", "10.231.0.12", None),
    ]
    assert plan.vendor.address == "10.231.1.10"
    assert plan.namespaces == ("apl-ctrl1", "apl-gw1", "apl-gpu1", "apl-vendor")


def test_gateways_are_numbered_among_themselves() -> None:
    plan = plan_lab(["ctrl1", "gw1", "gpu1", "gw2"])
    assert plan.machine("gw2").site_address == "10.231.0.13"
    assert plan.machine("gw2").outside_address == "10.231.1.3"


@pytest.mark.parametrize(
    ("name", "group"),
    [("ctrl2", "controller"), ("gw9", "gateway"), ("gpu12", "gpu"), ("db1", "other")],
)
def test_group_by_prefix(name: str, group: str) -> None:
    assert group_of(name) == group


def test_every_link_name_fits_the_kernel_limit() -> None:
    plan = plan_lab(["ctrl12345", "gw1234567", "gpu123456"])
    names = [m.site_veth for m in plan.machines] + [m.outside_veth for m in plan.machines]
    names.append(plan.vendor.veth)
    assert all(name.startswith("apl-") for name in names)
    assert max(len(name) for name in names) <= 15


@pytest.mark.parametrize(
    "hosts",
    [
        [],
        ["Ctrl1"],
        ["ctrl-1"],
        ["ctrl123456"],  # one too long for a link name
        ["vendor"],  # the vendor's namespace
        ["site0"],  # the site bridge's name
        ["gw1", "gw1"],
        [f"gw{i}" for i in range(9)],  # one more than the outside network holds
    ],
)
def test_bad_host_lists_are_refused(hosts: list[str]) -> None:
    with pytest.raises(LabError) as info:
        plan_lab(hosts)
    assert info.value.hint


def test_unknown_machine_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="no machine 'gpu9'.*ctrl1, gw1"):
        plan_lab(["ctrl1", "gw1"]).machine("gpu9")
