"""Preflight rules, one test per rule, on the report shape installer/preflight.yml gives."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import PreflightError
from appliance.install.content import Image, Staged
from appliance.install.preflight import Requirements, judge_host
from appliance.install.steps import refuse_strict_openziti

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def report(**changes: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "groups": ["gpu"],
        "os": "Debian",
        "os_version": "12",
        "arch": "x86_64",
        "vcpus": "4",
        "memory_mb": "16000",
        "free_bytes": str(50 * 2**30),
        "fips_enabled": "0",
        "listening": ['LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))'],
        "active_units": [],
        "podman": "podman version 4.3.1",
        "image_ids": [],
        "gpu": "",
        "vllm_device": "cpu",
        "epoch": str(NOW.timestamp() + 1.5),
    }
    facts.update(changes)
    return {"msg": facts, "_created": NOW.replace(tzinfo=None).isoformat()}


NEED = Requirements(component_bytes={"vllm": 2**30, "tiny-model": 2**20}, image_ids={"vllm": "ab"})


def test_a_good_host_passes_and_says_what_it_found() -> None:
    check = judge_host("gpu1", report(), NEED)
    assert check.ok, check.problems
    assert check.found["os"] == "Debian 12 x86_64"
    assert check.found["clock"] == "+1.5 s"
    assert "CPU vLLM" in check.found["gpu"]


def test_unsupported_os_is_refused() -> None:
    check = judge_host("gpu1", report(os="Ubuntu", os_version="24"), NEED)
    assert any("Ubuntu 24" in p and "Debian 12" in p for p in check.problems)


def test_too_little_memory_on_a_gpu_host() -> None:
    check = judge_host("gpu1", report(memory_mb="2000"), NEED)
    assert any("2000 MB" in p for p in check.problems)


def test_disk_for_the_images_the_host_receives() -> None:
    check = judge_host("gpu1", report(free_bytes=str(2**30)), NEED)
    assert any("GiB free" in p for p in check.problems)
    # The same host with vLLM already loaded needs room for the model only.
    assert judge_host("gpu1", report(free_bytes=str(2**30), image_ids=["ab"]), NEED).ok


def test_gpu_group_needs_a_gpu_unless_the_lab_says_cpu() -> None:
    check = judge_host("gpu1", report(vllm_device="gpu", gpu=""), NEED)
    assert any("nvidia-smi" in p for p in check.problems)
    found = judge_host("gpu1", report(vllm_device="gpu", gpu="H100, 550.1, 80 GiB"), NEED)
    assert found.ok and found.found["gpu"].startswith("H100")


def test_fips_strict_needs_the_kernel_in_fips_mode() -> None:
    strict = Requirements(component_bytes={}, image_ids={}, fips="strict")
    assert any("FIPS" in p for p in judge_host("gpu1", report(), strict).problems)
    assert judge_host("gpu1", report(fips_enabled="1"), strict).ok
    assert judge_host("gpu1", report(), NEED).ok  # --fips on reports, does not refuse


def test_clock_skew_is_refused_past_the_limit() -> None:
    check = judge_host("gpu1", report(epoch=str(NOW.timestamp() - 300)), NEED)
    assert any("-300 s off" in p for p in check.problems)


def test_a_port_taken_by_someone_else_is_refused_but_our_own_unit_is_fine() -> None:
    taken = ['LISTEN 0 128 127.0.0.1:8000 0.0.0.0:* users:(("nginx",pid=7,fd=3))']
    check = judge_host("gpu1", report(listening=taken), NEED)
    assert any("port 8000" in p and "nginx" in p for p in check.problems)
    ours = judge_host(
        "gpu1", report(listening=taken, active_units=["appliance-vllm.service"]), NEED
    )
    assert ours.ok


def test_missing_podman_and_missing_report() -> None:
    assert any("podman" in p for p in judge_host("gpu1", report(podman=""), NEED).problems)
    assert not judge_host("gpu1", {}, NEED).ok


def _staged(*components: str) -> Staged:
    image = Image("x", "1", "localhost/appliance/x:1", "0" * 64, Path("/nonexistent"))
    return Staged(Path("/stage"), dict.fromkeys(components, image), {}, {}, Path("/stage/ansible"))


def test_fips_strict_is_refused_plainly_for_openziti_before_any_host_is_probed() -> None:
    with pytest.raises(PreflightError) as refused:
        refuse_strict_openziti("strict", _staged("ziti-controller", "ziti-router", "vllm"))
    message = str(refused.value)
    assert "--fips strict cannot be honoured for ziti-controller, ziti-router" in message
    assert "GODEBUG=fips140=only" in message and "SHA-1" in message
    assert "nothing was changed" in message
    assert "--fips on" in (refused.value.hint or "")


def test_fips_strict_without_openziti_and_fips_on_with_it_go_ahead() -> None:
    refuse_strict_openziti("strict", _staged("vllm", "appliance-admin", "llm-gateway"))
    refuse_strict_openziti("on", _staged("ziti-controller", "ziti-router"))


def test_the_access_proxys_backend_port_is_checked_on_a_gateway_host() -> None:
    taken = ['LISTEN 0 128 127.0.0.1:8082 0.0.0.0:* users:(("nginx",pid=7,fd=3))']
    check = judge_host("gw1", report(groups=["gateway"], listening=taken), NEED)
    assert any("port 8082 (for appliance-access)" in p and "nginx" in p for p in check.problems)


def test_an_upgrade_finds_8080_held_by_the_llm_gateway_that_had_it_before() -> None:
    # Before issue 24 llm-gateway listened on 8080; now the access proxy does. The gateway
    # group's own units running here hold the group's ports: no refusal.
    held = [
        'LISTEN 0 128 127.0.0.1:8080 0.0.0.0:* users:(("llm-gateway",pid=7,fd=3))',
        'LISTEN 0 128 127.0.0.1:18000 0.0.0.0:* users:(("ziti",pid=8,fd=3))',
    ]
    running = ["appliance-llm-gateway.service", "appliance-llm-gateway-backend.service"]
    check = judge_host(
        "gw1", report(groups=["gateway"], listening=held, active_units=running), NEED
    )
    assert check.ok, check.problems
