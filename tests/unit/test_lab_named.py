"""Issue 14: `make demo` then `make test` collided on the one lab a host could hold. Labs
are named now, each with its own number, names, addresses and firewall table; these
check, on a fake host, that one lab's pieces are told apart from another's and that
removing one never touches the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import LabError
from appliance.lab.labs import LabOnHost, find_lab, free_slot
from appliance.lab.network import (
    LabOwner,
    firewall_rules,
    owner_tag,
    parse_owner,
    remove_network,
    scan_network,
)
from appliance.lab.plan import MAX_LABS, Slot, plan_lab
from tests.unit.fake_lab_host import FakeHost

HOSTS = ["ctrl1", "gw1", "gpu1"]
DEMO = LabOwner("default", Path("/cache/lab/default"))
TESTS = LabOwner("test", Path("/tmp/pytest/state"))


@pytest.fixture
def host() -> FakeHost:
    fake = FakeHost()
    fake.add_lab(plan_lab(HOSTS, 0), DEMO)
    fake.add_lab(plan_lab(HOSTS, 1), TESTS)
    return fake


def test_issue14_the_host_tells_two_labs_apart(host: FakeHost) -> None:
    found = scan_network(host)
    assert sorted(found.labs) == [0, 1]
    assert found.owner(Slot(0)) == DEMO
    assert found.owner(Slot(1)) == TESTS
    assert found.of(Slot(0)).namespaces == ("apl-ctrl1", "apl-gpu1", "apl-gw1", "apl-vendor")
    assert found.of(Slot(1)).firewall == "appliance_lab1"
    assert "apl1-s-gw1" in found.of(Slot(1)).links
    assert not set(found.of(Slot(0)).pieces) & set(found.of(Slot(1)).pieces)


def test_issue14_downing_one_lab_leaves_the_other_intact(host: FakeHost) -> None:
    demo_before = scan_network(host).of(Slot(0))
    remove_network(Slot(1), host, settle=0)
    after = scan_network(host)
    assert after.of(Slot(1)).empty
    assert after.of(Slot(0)) == demo_before
    assert after.owner(Slot(0)) == DEMO
    touched = [c for c in host.calls if "delete" in c]
    assert touched
    assert not [c for c in touched if c[-1].startswith("apl-") or c[-1] == "appliance_lab"]


def test_issue14_each_firewall_table_names_only_its_own_lab() -> None:
    rules = firewall_rules(Slot(2))
    assert "table inet appliance_lab2 {" in rules
    assert '"apl2-site0"' in rules
    assert "ip daddr != 10.231.4.1 drop" in rules
    assert "apl-site0" not in rules
    assert "appliance_lab " not in rules


def test_issue14_owner_tags() -> None:
    assert parse_owner(owner_tag(TESTS)) == TESTS
    # Bridges tagged before labs had names belong to the default lab.
    assert parse_owner("appliance-lab:/srv/cache/appliance/lab/default") == LabOwner(
        "default", Path("/srv/cache/appliance/lab/default")
    )
    assert parse_owner("") is None
    assert parse_owner("someone else's bridge") is None


def _on_host(*indices: int) -> dict[int, LabOnHost]:
    return {i: LabOnHost(Slot(i), LabOwner(f"lab{i}", Path(f"/s{i}"))) for i in indices}


def test_issue14_numbers() -> None:
    assert free_slot({}, "default") == Slot(0)
    assert free_slot(_on_host(0), "test") == Slot(1)
    assert free_slot(_on_host(0, 1, 3), "test2") == Slot(2)
    # The demo's number is its own, even while its lab is down.
    assert free_slot({}, "test") == Slot(1)
    assert find_lab(_on_host(0, 3), "lab3") == LabOnHost(Slot(3), LabOwner("lab3", Path("/s3")))
    assert find_lab(_on_host(0, 3), "test") is None


def test_issue14_every_number_taken_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="no lab number is free for lab extra") as info:
        free_slot(_on_host(*range(MAX_LABS)), "extra")
    assert "lab9" in str(info.value)
    assert "appliance lab down" in str(info.value.hint)
