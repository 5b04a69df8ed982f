#!/usr/bin/python3
"""Run on each host at the end of the site playbook: every service whose container still
runs an image other than the one its name now points at is restarted, so that what runs
is the image the bundle signed and the installer loaded.

A bundle may carry a component under the same name and version with new content (a
rebuild): its image is loaded under the old name, but nothing in the service's unit
changed, so without this the old image would run on while the site's record says the
new one does. Prints one JSON object, {"restarted": [unit, ...], "image_gone": [unit, ...]}
(the latter: services whose image name no longer resolves, left alone); a failure of
podman or systemctl exits 1 with what went wrong on stderr.

    restart_replaced_images.py
"""

from __future__ import annotations

import json
import subprocess
import sys

# podman labels a container with the unit that started it (Environment=PODMAN_SYSTEMD_UNIT).
UNIT_LABEL = "PODMAN_SYSTEMD_UNIT"


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


def main() -> None:
    restarted: list[str] = []
    # A container whose image name no longer resolves runs something no bundle names now
    # (a component the site no longer has); it is reported, not restarted.
    unnamed: list[str] = []
    for container in json.loads(_run("podman", "ps", "--format", "json") or "[]"):
        unit = (container.get("Labels") or {}).get(UNIT_LABEL)
        if not unit or unit in restarted:
            continue
        named = container.get("Image", "")
        found = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Id}}", named],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            unnamed.append(unit)
        elif found.stdout.strip() != container.get("ImageID"):
            _run("systemctl", "restart", unit)
            restarted.append(unit)
    print(json.dumps({"restarted": restarted, "image_gone": unnamed}))


if __name__ == "__main__":
    main()
