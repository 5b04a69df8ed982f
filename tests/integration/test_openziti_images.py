"""The OpenZiti controller and router images, and the llm-gateway image, run for real.

These need the upstream programs: built from their Go modules, or supplied (the supplied
folder, docs/components.md). Where the Go proxy refuses the modules and nothing is
supplied the tests are skipped with one line saying so, never faked.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from appliance.components.build import BuildReport
from appliance.components.program import read_build_info, sha256_file
from appliance.definition import Definition
from tests.integration.support import container, free_port, wait_http


@pytest.fixture(scope="module")
def controller_image(lab_definition: Definition) -> str:
    return (
        f"localhost/appliance/ziti-controller:{lab_definition.component('ziti-controller').version}"
    )


@pytest.fixture(scope="module")
def gateway_image(lab_definition: Definition) -> str:
    return f"localhost/appliance/llm-gateway:{lab_definition.component('llm-gateway').version}"


def test_ziti_binary_is_stamped_and_fips_built(
    build_lab: Callable[..., BuildReport],
    lab_definition: Definition,
    controller_image: str,
    tmp_path: Path,
) -> None:
    report = build_lab("ziti-controller", "ziti-router")
    controller, router = (r.image for r in report.results)
    assert controller is not None and router is not None
    assert controller.fips.built_for_fips and router.fips.built_for_fips
    assert controller.program is not None and router.program is not None
    assert controller.program.sha256 == router.program.sha256  # one program, two images
    pinned = lab_definition.component("ziti-controller").version
    assert controller.program.version == f"v{pinned}"

    version = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", controller_image, "version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == f"v{pinned}"

    binary = _extract(controller_image, "/usr/local/bin/ziti", tmp_path)
    assert sha256_file(binary) == controller.program.sha256
    settings = read_build_info(binary).settings
    assert settings["GOFIPS140"].startswith("v1.0.0-")
    assert settings["GOFIPS140"] == controller.program.settings["GOFIPS140"]


def test_quickstart_controller_and_router_answer_the_management_api(
    build_lab: Callable[..., BuildReport], controller_image: str
) -> None:
    build_lab("ziti-controller")
    ctrl, edge = free_port(), free_port()
    args = [
        "-p",
        f"127.0.0.1:{ctrl}:{ctrl}",
        "-p",
        f"127.0.0.1:{edge}:{edge}",
        "--entrypoint",
        "/usr/local/bin/ziti",
        controller_image,
        "edge",
        "quickstart",
        "--home",
        "/tmp/qs",
        "--ctrl-address",
        "127.0.0.1",
        "--ctrl-port",
        str(ctrl),
        "--router-address",
        "127.0.0.1",
        "--router-port",
        str(edge),
        "-u",
        "admin",
        "-p",
        "test-only-password",
    ]
    base = f"https://127.0.0.1:{ctrl}/edge/management/v1"
    with container("appliance-test-ziti", args) as alive:
        wait_http(f"https://127.0.0.1:{ctrl}/version", timeout=120, alive=alive, verify=False)
        # The API answers a moment before the quickstart has made its admin: retry briefly.
        deadline = time.monotonic() + 60
        while True:
            auth = httpx.post(
                f"{base}/authenticate?method=password",
                verify=False,
                timeout=10,
                json={"username": "admin", "password": "test-only-password"},
            )
            if auth.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert auth.status_code == 200, auth.text
        token = auth.json()["data"]["token"]
        while True:
            routers = httpx.get(
                f"{base}/edge-routers", headers={"zt-session": token}, verify=False, timeout=10
            ).json()["data"]
            if routers and all(r["isOnline"] for r in routers):
                break
            assert time.monotonic() < deadline, f"router not online: {routers}"
            time.sleep(2)


def test_llm_gateway_answers_health(
    build_lab: Callable[..., BuildReport], gateway_image: str, tmp_path: Path
) -> None:
    build_lab("llm-gateway")
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"listen: 0.0.0.0:{port}\n"
        "providers:\n  local:\n    base_url: http://127.0.0.1:9/v1\n"
        "api_keys:\n  enabled: true\n  keys:\n"
        "    - {name: test, key: sk-gw-test-only, allowed_models: [tiny]}\n"
    )
    args = [
        "-p",
        f"127.0.0.1:{port}:{port}",
        "--volume",
        f"{config}:/etc/llm-gateway/config.yaml:ro",
        gateway_image,
    ]
    with container("appliance-test-gateway", args) as alive:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=60, alive=alive)


def _extract(image: str, path: str, dest_dir: Path) -> Path:
    created = subprocess.run(
        ["podman", "create", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        dest = dest_dir / Path(path).name
        subprocess.run(["podman", "cp", f"{created}:{path}", str(dest)], check=True)
        return dest
    finally:
        subprocess.run(["podman", "rm", created], capture_output=True, check=False)
