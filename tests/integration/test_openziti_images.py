"""The OpenZiti controller and router images, and the llm-gateway image, run for real.

These need the upstream Go modules; where this machine's Go proxy refuses them the tests
are skipped with the proxy's answer (see the issue's note), never faked.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from appliance.components.build import BuildReport
from appliance.components.gobuild import go_build_settings
from tests.integration.support import container, free_port, wait_http

CONTROLLER = "localhost/appliance/ziti-controller:2.0.3"
GATEWAY = "localhost/appliance/llm-gateway:0.1.4"


def test_ziti_binary_is_stamped_and_fips_built(
    build_lab: Callable[..., BuildReport], tmp_path: Path
) -> None:
    report = build_lab("ziti-controller", "ziti-router")
    controller, router = (r.image for r in report.results)
    assert controller is not None and router is not None
    assert controller.fips.built_for_fips and router.fips.built_for_fips
    assert controller.source == router.source == "github.com/openziti/ziti/v2@v2.0.3"

    version = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", CONTROLLER, "version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "v2.0.3"

    binary = _extract(CONTROLLER, "/usr/local/bin/ziti", tmp_path)
    assert go_build_settings(binary)["GOFIPS140"].startswith("v1.0.0-")


def test_quickstart_controller_and_router_answer_the_management_api(
    build_lab: Callable[..., BuildReport],
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
        CONTROLLER,
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
        auth = httpx.post(
            f"{base}/authenticate?method=password",
            verify=False,
            timeout=10,
            json={"username": "admin", "password": "test-only-password"},
        )
        assert auth.status_code == 200, auth.text
        token = auth.json()["data"]["token"]
        deadline = time.monotonic() + 60
        while True:
            routers = httpx.get(
                f"{base}/edge-routers", headers={"zt-session": token}, verify=False, timeout=10
            ).json()["data"]
            if routers and all(r["isOnline"] for r in routers):
                break
            assert time.monotonic() < deadline, f"router not online: {routers}"
            time.sleep(2)


def test_llm_gateway_answers_health(build_lab: Callable[..., BuildReport], tmp_path: Path) -> None:
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
        GATEWAY,
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
