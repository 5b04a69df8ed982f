"""The lab's address plan: one source for every name and address, checked without processes."""

from __future__ import annotations

import pytest

from appliance.errors import LabError
from appliance.lab.plan import (
    MAX_LABS,
    LabPlan,
    Slot,
    check_lab_name,
    group_of,
    index_of_link,
    index_of_table,
    plan_lab,
)


def test_default_hosts_get_the_documented_addresses() -> None:
    plan = plan_lab(["ctrl1", "gw1", "gpu1"])
    rows = [(m.name, m.group, m.site_address, m.outside_address) for m in plan.machines]
    assert rows == [
        ("ctrl1", "controller", "10.231.0.10", "10.231.1.9"),
        ("gw1", "gateway", "10.231.0.11", "10.231.1.2"),
        ("gpu1", "gpu", "10.231.0.12", None),
    ]
    assert plan.vendor.address == "10.231.1.10"
    assert plan.vendor_access == plan.machine("ctrl1")
    assert plan.namespaces == ("apl-ctrl1", "apl-gw1", "apl-gpu1", "apl-vendor")


def test_only_the_first_controller_is_the_vendor_access_host() -> None:
    plan = plan_lab(["gw1", "ctrl2", "ctrl1"])
    assert plan.vendor_access == plan.machine("ctrl2")
    assert plan.machine("ctrl1").outside_address is None
    assert plan_lab(["gw1", "gpu1"]).vendor_access is None


def test_eight_gateways_leave_no_room_for_the_vendor_access_host() -> None:
    with pytest.raises(LabError, match="room for 7"):
        plan_lab(["ctrl1", *(f"gw{i}" for i in range(1, 9))])


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


@pytest.mark.parametrize("index", range(MAX_LABS))
def test_every_link_name_fits_the_kernel_limit(index: int) -> None:
    plan = plan_lab(["ctrl1234", "gw123456", "gpu12345"], index)
    slot = plan.slot
    names = [m.site_veth for m in plan.machines] + [m.outside_veth for m in plan.machines]
    names += [plan.vendor.veth, slot.site_bridge, slot.ext_bridge]
    assert all(name.startswith(slot.prefix) for name in names)
    assert max(len(name) for name in names) <= 15


def test_issue14_the_default_lab_keeps_its_names_and_addresses() -> None:
    plan = plan_lab(["ctrl1", "gw1"])
    assert plan.slot == Slot(0)
    assert (plan.slot.site_bridge, plan.slot.ext_bridge) == ("apl-site0", "apl-ext0")
    assert plan.slot.nft_table == "appliance_lab"
    assert (plan.slot.installer_address, plan.slot.site_network) == ("10.231.0.1", "10.231.0.0/24")
    assert plan.machine("ctrl1").site_veth == "apl-s-ctrl1"


def test_issue14_a_second_lab_shares_no_name_or_address_with_the_first() -> None:
    hosts = ["ctrl1", "gw1", "gpu1"]
    first, second = plan_lab(hosts, 0), plan_lab(hosts, 3)
    assert second.namespaces == ("apl3-ctrl1", "apl3-gw1", "apl3-gpu1", "apl3-vendor")
    assert second.machine("gw1").site_veth == "apl3-s-gw1"
    assert second.machine("gw1").site_address == "10.231.6.11"
    assert second.machine("gw1").outside_address == "10.231.7.2"
    assert second.vendor.address == "10.231.7.10"
    assert second.slot.installer_address == "10.231.6.1"
    assert second.slot.nft_table == "appliance_lab3"

    def everything(plan: LabPlan) -> set[str]:
        found: set[str] = set()
        for m in plan.machines:
            found |= {m.namespace, m.site_veth, m.outside_veth, m.site_address}
            found |= {m.outside_address} if m.outside_address else set()
        slot, vendor = plan.slot, plan.vendor
        found |= {vendor.namespace, vendor.veth, vendor.address, slot.site_bridge}
        found |= {slot.ext_bridge, slot.nft_table, slot.installer_address, slot.site_network}
        return found | {slot.outside_network}

    assert not everything(first) & everything(second)


def test_issue14_each_name_maps_back_to_its_own_lab_only() -> None:
    for index in range(MAX_LABS):
        plan = plan_lab(["ctrl1", "gw1"], index)
        names = [*plan.namespaces, plan.slot.site_bridge, plan.machine("gw1").outside_veth]
        assert {index_of_link(n) for n in names} == {index}
        assert index_of_table(plan.slot.nft_table) == index
    for other in ("eth0", "docker0", "aplx-1", "apl10-ctrl1", "bg-site-x", "apple-1"):
        assert index_of_link(other) is None
    assert index_of_table("appliance_lab10") is None
    assert index_of_table("filter") is None


@pytest.mark.parametrize("index", [-1, MAX_LABS])
def test_lab_numbers_are_bounded(index: int) -> None:
    with pytest.raises(LabError, match="out of range"):
        Slot(index)


@pytest.mark.parametrize("name", ["default", "test", "test2", "my-lab"])
def test_lab_names(name: str) -> None:
    assert check_lab_name(name) == name


@pytest.mark.parametrize("name", ["", "Test", "1lab", "a" * 17, "rootfs", "a:b", "a/b"])
def test_bad_lab_names_are_refused(name: str) -> None:
    with pytest.raises(LabError, match="cannot name a lab") as info:
        check_lab_name(name)
    assert info.value.hint


@pytest.mark.parametrize(
    "hosts",
    [
        [],
        ["Ctrl1"],
        ["ctrl-1"],
        ["ctrl12345"],  # one too long for a link name
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
