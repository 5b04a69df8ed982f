"""installer/files/restart_replaced_images.py: a service whose container runs an image other
than the one its name now points at is restarted; the others are left alone. podman and
systemctl are stand-ins on PATH that answer from a JSON file and log what they were asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "installer" / "files" / "restart_replaced_images.py"

_PODMAN = """#!{python}
import json, sys
state = json.load(open({state!r}))
args = sys.argv[1:]
if args[:1] == ["ps"]:
    print(json.dumps(state["containers"]))
elif args[:2] == ["image", "inspect"]:
    name = args[-1]
    if name not in state["images"]:
        sys.stderr.write("Error: " + name + ": image not known")
        sys.exit(125)
    print(state["images"][name])
"""
_SYSTEMCTL = """#!{python}
import os, sys
open({log!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
if os.path.exists(os.path.join(os.path.dirname({log!r}), "fail")):
    sys.stderr.write("Job for " + sys.argv[-1] + " failed: unit failed")
    sys.exit(1)
"""


def _run(tmp_path: Path, containers: list[dict[str, object]], images: dict[str, str]):
    state, log = tmp_path / "state.json", tmp_path / "systemctl.log"
    state.write_text(json.dumps({"containers": containers, "images": images}))
    log.touch()
    for name, text in (("podman", _PODMAN), ("systemctl", _SYSTEMCTL)):
        path = tmp_path / name
        path.write_text(text.format(python=sys.executable, state=str(state), log=str(log)))
        path.chmod(0o755)
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        check=False,
        timeout=60,
    )
    return done, log.read_text().splitlines()


def _container(name: str, image: str, image_id: str, unit: str | None) -> dict[str, object]:
    labels = {"PODMAN_SYSTEMD_UNIT": unit} if unit else {}
    return {"Names": [name], "Image": image, "ImageID": image_id, "Labels": labels}


def test_only_a_service_on_a_replaced_image_is_restarted(tmp_path: Path) -> None:
    admin = "localhost/appliance/appliance-admin:0.1.0"
    vllm = "localhost/appliance/vllm:0.32.0"
    containers = [
        # Rebuilt under the same name: the name now points at the new image.
        _container("appliance-access", admin, "old" * 8, "appliance-access.service"),
        _container("appliance-admin", admin, "old" * 8, "appliance-admin.service"),
        _container("appliance-vllm", vllm, "vllm" * 8, "appliance-vllm.service"),
        # Not started by a unit (a one-shot): never restarted.
        _container("appliance-enroll", admin, "old" * 8, None),
    ]
    done, restarts = _run(tmp_path, containers, {admin: "new" * 8, vllm: "vllm" * 8})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "restarted": ["appliance-access.service", "appliance-admin.service"],
        "image_gone": [],
    }
    assert restarts == ["restart appliance-access.service", "restart appliance-admin.service"]


def test_nothing_replaced_restarts_nothing(tmp_path: Path) -> None:
    admin = "localhost/appliance/appliance-admin:0.1.0"
    containers = [_container("appliance-admin", admin, "same" * 8, "appliance-admin.service")]
    done, restarts = _run(tmp_path, containers, {admin: "same" * 8})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"restarted": [], "image_gone": []}
    assert restarts == []


def test_a_service_whose_image_name_is_gone_is_reported_not_restarted(tmp_path: Path) -> None:
    gone = "localhost/appliance/gone:1"
    containers = [_container("appliance-x", gone, "x" * 8, "appliance-x.service")]
    done, restarts = _run(tmp_path, containers, {})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"restarted": [], "image_gone": ["appliance-x.service"]}
    assert restarts == []


def test_systemctl_failing_is_an_error_that_says_what_failed(tmp_path: Path) -> None:
    admin = "localhost/appliance/appliance-admin:0.1.0"
    containers = [_container("appliance-admin", admin, "old" * 8, "appliance-admin.service")]
    (tmp_path / "fail").touch()
    done, _ = _run(tmp_path, containers, {admin: "new" * 8})
    assert done.returncode == 1
    assert "systemctl restart appliance-admin.service" in done.stderr
    assert "unit failed" in done.stderr
