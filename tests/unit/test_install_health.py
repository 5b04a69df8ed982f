"""Health judging: darkness from `ss`, units, model and admin checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from appliance.install import placement
from appliance.install.health import (
    Check,
    HealthReport,
    judge_health,
    low_on_space,
    non_loopback_listeners,
    outbound_refused,
    restarted_units,
    started_since_up,
)

REPO = Path(__file__).resolve().parents[2]

SS = [
    "LISTEN 0 128 0.0.0.0:22 0.0.0.0:*",
    "LISTEN 0 128 [::]:22 [::]:*",
    "LISTEN 0 2048 127.0.0.1:8000 0.0.0.0:*",
    "LISTEN 0 2048 [::1]:8443 [::]:*",
]


def host(listening: list[str], units: list[str] | None = None) -> dict[str, object]:
    return {"msg": {"listening": listening, "units": units or [], "installed": {}, "fips": {}}}


def test_loopback_listeners_are_not_counted() -> None:
    assert non_loopback_listeners(SS) == ["0.0.0.0:22", "[::]:22"]
    assert non_loopback_listeners(["LISTEN 0 5 *:9999 *:*"]) == ["*:9999"]


def test_a_host_listening_beyond_loopback_is_not_dark() -> None:
    health = judge_health({"gpu1": {"host": host([*SS, "LISTEN 0 5 10.0.0.12:8000 0:*"])}}, [])
    dark = next(c for c in health.checks if c.name == "dark")
    assert not dark.ok and "10.0.0.12:8000" in dark.detail
    assert not health.ok


def test_failed_units_model_and_admin() -> None:
    reports = {
        "gpu1": {
            "host": host(SS, ["appliance-vllm.service failed failed"]),
            "model": {
                "msg": {"expected": True, "models": [], "chat_status": 0, "error": "refused"}
            },
        },
        "ctrl1": {
            "host": host(SS, ["appliance-admin.service active running"]),
            "admin": {"msg": {"expected": "True", "status": 200, "port": 8443}},
        },
    }
    health = judge_health(reports, ["gw1"])
    failed = {(c.host, c.name) for c in health.failed}
    assert failed == {("gw1", "reachable"), ("gpu1", "units"), ("gpu1", "model served")}
    assert ("ctrl1", "admin service up") in {(c.host, c.name) for c in health.checks}


def test_a_served_model_passes() -> None:
    reports = {
        "gpu1": {
            "host": host(SS, ["appliance-vllm.service active running"]),
            "model": {"msg": {"expected": True, "models": ["tiny"], "chat_status": 200}},
        }
    }
    assert judge_health(reports, []).ok


def test_edge_listeners_of_the_hosts_groups_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "EDGE_PORTS", {"gateway": (3022,)})
    edge = [*SS, "LISTEN 0 5 10.0.0.11:3022 0.0.0.0:*"]
    gateway = {"msg": {"groups": ["gateway"], "listening": edge, "units": []}}
    gpu = {"msg": {"groups": ["gpu"], "listening": edge, "units": []}}
    health = judge_health({"gw1": {"host": gateway}, "gpu1": {"host": gpu}}, [])
    dark = {c.host: c.ok for c in health.checks if c.name == "dark"}
    assert dark == {"gw1": True, "gpu1": False}


def _overlay(**msg: object) -> dict[str, object]:
    return {"host": host(SS), "overlay": {"msg": {"expected": True, **msg}}}


def test_a_healthy_overlay_passes_every_check() -> None:
    report = _overlay(
        routers=[{"name": "gw1", "online": True}, {"name": "gpu1", "online": True}],
        services=[{"name": "vllm", "terminators": 1}, {"name": "llm-gateway", "terminators": 1}],
        gateway_expected=True,
        gateway={"status": 200, "seconds": 0.4},
    )
    health = judge_health({"ctrl1": report}, [])
    assert health.ok, health.failed
    names = [c.name for c in health.checks]
    assert names[1:] == [
        "units",
        "controller API",
        "router gw1",
        "router gpu1",
        "service vllm",
        "service llm-gateway",
        "gateway through the overlay",
    ]
    assert health.overlay_missing is None


def test_a_gpu_host_that_failed_its_health_check_is_named_with_where_requests_go() -> None:
    hosts = [{"router": "gpu1", "failed": False}, {"router": "gpu2", "failed": True}]
    report = _overlay(services=[{"name": "vllm", "terminators": 2, "hosts": hosts}])
    (check,) = [c for c in judge_health({"ctrl1": report}, []).checks if c.name == "service vllm"]
    assert not check.ok
    assert check.detail == "gpu2 failed its health check: requests go to gpu1"
    everyone = [{**h, "failed": True} for h in hosts]
    report = _overlay(services=[{"name": "vllm", "terminators": 2, "hosts": everyone}])
    (check,) = [c for c in judge_health({"ctrl1": report}, []).checks if c.name == "service vllm"]
    assert check.detail == "every host failed its health check (gpu1, gpu2)"
    healthy = [{**h, "failed": False} for h in hosts]
    report = _overlay(services=[{"name": "vllm", "terminators": 2, "hosts": healthy}])
    (check,) = [c for c in judge_health({"ctrl1": report}, []).checks if c.name == "service vllm"]
    assert check.ok and check.detail == "2 terminator(s) on gpu1, gpu2"


def test_an_offline_router_an_unhosted_service_and_a_refused_chat_fail() -> None:
    report = _overlay(
        routers=[{"name": "gw1", "online": False}],
        services=[{"name": "vllm", "terminators": 0}],
        gateway_expected=True,
        gateway={"status": 401, "error": "API key required"},
    )
    failed = {c.name: c.detail for c in judge_health({"ctrl1": report}, []).failed}
    assert failed == {
        "router gw1": "offline",
        "service vllm": "no terminator: nothing hosts it",
        "gateway through the overlay": "HTTP 401: API key required",
    }


def test_an_unreachable_controller_is_one_failure_not_a_cascade() -> None:
    report = _overlay(error="the controller's management API: connection refused")
    failed = judge_health({"ctrl1": report}, []).failed
    assert [(c.name, c.detail) for c in failed] == [
        ("controller API", "the controller's management API: connection refused")
    ]


def test_a_site_without_the_overlay_says_so_in_one_line() -> None:
    report = {"host": host(SS), "overlay": {"msg": {"expected": "False"}}}
    health = judge_health({"ctrl1": report}, [])
    assert health.ok
    assert health.overlay_missing is not None
    assert health.overlay_missing.startswith("overlay: not installed: ")
    assert "\n" not in health.overlay_missing


def test_the_vendor_access_router_listens_only_where_the_inventory_puts_it() -> None:
    # The admin host in group vendor_access may have the vendor router's 3023 beyond
    # loopback (on its outside leg); the same socket on a gateway-only host is a leak.
    edge = [*SS, "LISTEN 0 5 172.16.40.2:3023 0.0.0.0:*"]
    admin = {"msg": {"groups": ["controller", "admin", "vendor_access"], "listening": edge}}
    gateway = {"msg": {"groups": ["gateway"], "listening": edge, "units": []}}
    health = judge_health({"ctrl1": {"host": admin}, "gw1": {"host": gateway}}, [])
    dark = {c.host: (c.ok, c.detail) for c in health.checks if c.name == "dark"}
    assert dark == {
        "ctrl1": (True, "only SSH and edge listeners beyond loopback"),
        "gw1": (False, "listening beyond loopback: 172.16.40.2:3023"),
    }
    assert "appliance-ziti-router-vendor.service" in placement.service_units()


def test_each_controller_of_a_cluster_is_a_member_and_online() -> None:
    report = _overlay(
        controllers_expected=["ctrl1", "ctrl2", "ctrl3"],
        controllers=[{"name": "ctrl1", "online": True}, {"name": "ctrl2", "online": False}],
        routers=[],
        services=[],
    )
    health = judge_health({"ctrl1": report}, [])
    assert [
        (c.name, c.ok, c.detail) for c in health.checks if c.name.startswith("controller ctrl")
    ] == [
        ("controller ctrl1", True, "a member, online"),
        ("controller ctrl2", False, "offline"),
        ("controller ctrl3", False, "not a member"),
    ]


@pytest.mark.parametrize(
    ("access", "ok", "said"),
    [
        (
            {
                "status": 200,
                "health": {
                    "policy_received": True,
                    "policy_version": "ab" * 32,
                    "admin_service": "answering",
                },
            },
            True,
            "policy abababababab, admin service answering",
        ),
        (
            {
                "status": 200,
                "health": {
                    "policy_received": True,
                    "policy_version": "ab" * 32,
                    "admin_service": "answering",
                    "model_paths_lost": 4,
                    "model_path_lost_seconds_ago": 310.2,
                },
            },
            True,
            "the path to the model broke 4 time(s) since the proxy started, last 5 min ago",
        ),
        (
            {
                "status": 200,
                "health": {
                    "policy_received": False,
                    "admin_service": "no policy exchange since 2026-12-06",
                },
            },
            False,
            "no policy from the admin service yet (no policy exchange since 2026-12-06)",
        ),
        ({"status": -1, "error": "Connection refused"}, False, "Connection refused"),
    ],
)
def test_a_gateway_hosts_access_proxy_must_hold_a_policy(
    access: dict[str, object], ok: bool, said: str
) -> None:
    reports = {"gw1": {"access": {"msg": {"expected": True, **access}}}}
    (check,) = judge_health(reports, []).checks
    assert (check.host, check.name, check.ok) == ("gw1", "access policy", ok)
    assert said in check.detail


def test_an_on_demand_unit_at_rest_is_fine_but_failed_is_not() -> None:
    # The llm-gateway slots start when the access proxy first writes their file; the
    # one-shots that restart them run only then (ADR 0017).
    from appliance.install.health import HealthReport, _host_checks

    def units_check(lines: list[str]) -> tuple[bool, str]:
        report = HealthReport()
        _host_checks(report, "gw1", {"units": lines, "listening": [], "groups": ["gateway"]})
        (check,) = [c for c in report.checks if c.name == "units"]
        return check.ok, check.detail

    at_rest = [
        "appliance-access.service active running",
        "appliance-llm-gateway-b.service inactive dead",
        "appliance-llm-gateway-a-restart.service inactive dead",
    ]
    assert units_check(at_rest)[0]
    ok, detail = units_check([*at_rest, "appliance-llm-gateway-a.service failed failed"])
    assert not ok and "appliance-llm-gateway-a.service" in detail
    ok, detail = units_check(["appliance-access.service inactive dead"])
    assert not ok and "appliance-access.service" in detail


def test_the_vendor_shell_proxy_must_serve_every_opted_in_host() -> None:
    """A proxy restarting in a loop shows as an active unit at times; its ports do not lie."""
    down = {"hosts": ["gpu1", "gw1"], "serving": ["gpu1"]}
    health = judge_health({"ctrl1": {"vendor shell": {"msg": down}}}, [])
    [check] = health.checks
    assert not check.ok and check.name == "vendor shell proxy"
    assert "not serving gw1" in check.detail and "journalctl -u appliance-vendor-shell" in (
        check.detail
    )
    up = {"hosts": ["gpu1"], "serving": ["gpu1"]}
    assert judge_health({"ctrl1": {"vendor shell": {"msg": up}}}, []).ok
    # No host opted in: no check at all.
    none: dict[str, object] = {"hosts": [], "serving": []}
    assert judge_health({"ctrl1": {"vendor shell": {"msg": none}}}, []).checks == []


def _counter(packets: int) -> dict[str, object]:
    """What `nft -j list counter inet appliance outbound_refused` prints (nft 1.0)."""
    return {
        "nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {
                "counter": {
                    "family": "inet",
                    "name": "outbound_refused",
                    "table": "appliance",
                    "handle": 3,
                    "packets": packets,
                    "bytes": 60 * packets,
                }
            },
        ]
    }


def _host_with_counter(sealed: object) -> dict[str, object]:
    return {"msg": {"listening": SS, "units": [], "sealed": sealed}}


def _sealed(health: HealthReport) -> Check:
    return next(c for c in health.checks if c.name == "sealed")


def test_packets_bound_outside_the_site_fail_sealed_and_say_where_to_look() -> None:
    facts = _host_with_counter(_counter(3))
    sealed = next(
        c for c in judge_health({"gw1": {"host": facts}}, []).checks if c.name == "sealed"
    )
    assert not sealed.ok
    assert "3 packet(s)" in sealed.detail and "journalctl -k -g appliance-sealed" in sealed.detail


def test_a_quiet_host_is_sealed_and_the_count_reads_from_text_too() -> None:
    facts = _host_with_counter(_counter(0))
    health = judge_health({"gw1": {"host": facts}}, [])
    assert next(c for c in health.checks if c.name == "sealed").ok
    assert outbound_refused(json.dumps(_counter(7))) == (7, 420)


def test_a_host_without_the_firewall_table_is_not_sealed() -> None:
    facts = _host_with_counter({})
    sealed = next(
        c for c in judge_health({"gw1": {"host": facts}}, []).checks if c.name == "sealed"
    )
    assert not sealed.ok and "appliance-firewall" in sealed.detail
    assert outbound_refused("Error: No such file or directory") is None


def test_units_systemd_restarted_are_named_without_failing_the_host() -> None:
    shown = [
        "Id=appliance-vllm.service",
        "NRestarts=0",
        "",
        "NRestarts=2",
        "Id=appliance-ziti-router.service",
        "",
        "Id=appliance-firewall.service",
    ]
    assert restarted_units(shown) == {"appliance-ziti-router.service": 2}
    facts = {"msg": {"listening": SS, "units": ["appliance-ziti-router.service active"]}}
    facts["msg"]["restarts"] = shown  # type: ignore[index]
    units = next(c for c in judge_health({"gw1": {"host": facts}}, []).checks if c.name == "units")
    assert units.ok
    assert units.detail.endswith(
        "restarted by systemd since boot: appliance-ziti-router.service (2x)"
    )


#: A host that booted at 100 s on its boot clock (userspace), finished booting at 130 s, was
#: installed at 400 s, and is asked at 4000 s.
CLOCK = [
    "UserspaceTimestampMonotonic=100000000",
    "FinishTimestampMonotonic=130000000",
    "Now=4000.00",
    "InstalledAgo=3600",
]


def _unit(name: str, entered_s: float, restarts: int = 0) -> list[str]:
    return [
        f"Id={name}",
        f"NRestarts={restarts}",
        f"ActiveEnterTimestampMonotonic={int(entered_s * 1e6)}",
        "",
    ]


def test_a_unit_started_after_the_site_came_up_is_named_and_one_started_by_it_is_not() -> None:
    shown = [
        *_unit("appliance-vllm.service", 390),  # started by the install
        *_unit("appliance-ziti-controller.service", 3700),  # stopped and started by hand
        *_unit("appliance-ziti-router.service", 3900, restarts=1),  # crashed, systemd
        *_unit("appliance-never.service", 0),  # never active
        # A one-shot that ran after the install and is done: not running, not named.
        "Id=appliance-llm-gateway-a-restart.service",
        "ActiveState=inactive",
        "ActiveEnterTimestampMonotonic=3800000000",
        "",
    ]
    started, booted = started_since_up(shown, CLOCK)
    assert started == {
        "appliance-ziti-controller.service": 5.0,
        "appliance-ziti-router.service": pytest.approx(100 / 60),
    }
    assert booted is None
    facts = {"msg": {"listening": SS, "units": [], "restarts": shown, "clock": CLOCK}}
    units = next(
        c for c in judge_health({"ctrl1": {"host": facts}}, []).checks if c.name == "units"
    )
    assert units.ok
    assert units.detail.endswith(
        "restarted by systemd since boot: appliance-ziti-router.service (1x); "
        "started since the site came up: appliance-ziti-controller.service (5 min ago)"
    )


def test_a_host_booted_after_its_install_says_so_and_its_boot_starts_are_not_named() -> None:
    # Installed at 400 s of an earlier boot: the boot clock began again since, so the
    # install lies before this boot's start (userspace at 100 s).
    clock = [*CLOCK[:3], "InstalledAgo=7200"]
    shown = [*_unit("appliance-ziti-router.service", 120), *_unit("appliance-access.service", 125)]
    started, booted = started_since_up(shown, clock)
    assert started == {}
    assert booted == (4000 - 100) / 60
    facts = {"msg": {"listening": SS, "units": [], "restarts": shown, "clock": clock}}
    units = next(c for c in judge_health({"gw1": {"host": facts}}, []).checks if c.name == "units")
    assert units.ok and units.detail.endswith("; booted 65 min ago, after its last install")


def test_no_install_record_or_a_boot_not_finished_names_nothing() -> None:
    shown = _unit("appliance-vllm.service", 3900)
    assert started_since_up(shown, CLOCK[:3]) == ({}, None)  # stat failed: no InstalledAgo
    unfinished = ["UserspaceTimestampMonotonic=100000000", "FinishTimestampMonotonic=0", *CLOCK[2:]]
    assert started_since_up(shown, unfinished) == ({}, None)
    assert started_since_up(shown, []) == ({}, None)


def test_a_file_system_short_of_space_fails_disk_and_names_it() -> None:
    df = [
        f"/ {100 << 30} {40 << 30}",  # 40 % free
        f"/var/lib/appliance-admin {256 << 20} {4 << 20}",  # a small disk, full
        f"/var/lib/containers {100 << 30} {900 << 20}",  # 0.9 % free: short, under 1 GiB
        f"/var/lib/appliance {2000 << 30} {2 << 30}",  # 0.1 % free, but 2 GiB: enough
        "Mounted on 1B-blocks Avail",  # a header line is not a file system
    ]
    assert low_on_space(df) == [
        "/var/lib/appliance-admin: 4 MiB free (2 %)",
        "/var/lib/containers: 900 MiB free (1 %)",
    ]
    facts = {"msg": {"listening": SS, "units": [], "disk": df}}
    disk = next(c for c in judge_health({"ctrl1": {"host": facts}}, []).checks if c.name == "disk")
    assert not disk.ok
    assert "/var/lib/appliance-admin: 4 MiB free" in disk.detail and "free space" in disk.detail
    facts["msg"]["disk"] = df[:1]  # type: ignore[index]
    disk = next(c for c in judge_health({"ctrl1": {"host": facts}}, []).checks if c.name == "disk")
    assert disk.ok
    facts["msg"]["disk"] = []  # type: ignore[index]
    disk = next(c for c in judge_health({"ctrl1": {"host": facts}}, []).checks if c.name == "disk")
    assert not disk.ok and "could not be read" in disk.detail


def test_the_playbooks_df_command_runs_and_gives_the_lines_the_check_reads() -> None:
    """The very command of installer/health.yml, run here (its options once clashed and
    it printed nothing, which the check read as enough space)."""
    playbook = yaml.safe_load((REPO / "installer/health.yml").read_text())
    [task] = [t for t in playbook[0]["tasks"] if t.get("register") == "health_disk"]
    done = subprocess.run(
        ["bash", "-c", task["ansible.builtin.shell"]], capture_output=True, text=True, check=True
    )
    lines = done.stdout.splitlines()
    assert lines and lines[0].split()[0] == "/", done.stdout + done.stderr
    rows = [line.split() for line in lines]
    assert all(len(row) == 3 and row[1].isdigit() and row[2].isdigit() for row in rows), lines
