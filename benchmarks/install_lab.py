"""The installer's times on a fresh lab: cold install, rerun, upgrade, rollback.

    sudo python benchmarks/install_lab.py [--definition bundles/lab.yaml]

Needs root and the lab components built (`make demo` builds them; with supplied OpenZiti
programs the media hold the overlay, `--without-overlay` leaves it out). It boots a fresh lab
(its own state folder, removed at the end), signs media N and N+1 (N+1 changes one
component: the model gains a file), then times, each through install.sh from the media
as an installer would run it:

    cold install   N on bare hosts (bootstrap virtualenv, verify, import, preflight,
                   converge, health with vLLM's first start on a CPU)
    rerun          N again (Ansible changed=0)
    upgrade        N → N+1 (snapshot, converge, vLLM restart, health)
    rollback       N+1 → N on demand (restore, converge, health)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.lab import down, up
from appliance.lab.media import make_lab_media

HOSTS = ("ctrl1", "gw1", "gpu1")


def run(media: Path, command: str, inventory: Path, home: Path, *args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env["APPLIANCE_INSTALLER_HOME"] = str(home)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    started = time.monotonic()
    done = subprocess.run(
        ["sh", str(media / "install.sh"), command, "--inventory", str(inventory), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{command} failed after {seconds:.0f} s:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--definition", type=Path, default=Path("bundles/lab.yaml"))
    parser.add_argument(
        "--without-overlay",
        action="store_true",
        help="leave the OpenZiti components out of the media (the site as it was before "
        "the overlay), for comparison",
    )
    args = parser.parse_args()
    only = ("vllm", "appliance-admin", "tiny-model") if args.without_overlay else None
    if os.geteuid() != 0:
        sys.exit("the lab needs root")

    with tempfile.TemporaryDirectory(prefix="bench-install-", dir=Path.home()) as tmp:
        work = Path(tmp)
        model = work / "model-2/tiny"
        shutil.copytree("build/models/tiny", model)
        (model / "REVISION").write_text("2\n")
        started = time.monotonic()
        n = make_lab_media(
            work / "n", work / "keys", definition=args.definition, version="1.0.0", only=only
        )
        n1 = make_lab_media(
            work / "n1",
            work / "keys",
            definition=args.definition,
            version="1.0.1",
            model=model,
            model_version="2",
            only=only,
        )
        sign = time.monotonic() - started

        started = time.monotonic()
        up(HOSTS, work / "lab", name="bench")  # beside a demo lab, never in its place
        lab_up = time.monotonic() - started
        inventory, home = work / "lab/inventory.yml", work / "installer"
        try:
            figures = {"sign two media": sign, "lab up": lab_up}
            figures["cold install"], out = run(
                n.path, "install", inventory, home, "--root-fingerprint", n.root_fingerprint
            )
            changes = re.search(r"Ansible made (\d+) changes", out)
            figures["rerun"], again = run(n.path, "install", inventory, home)
            assert "changed=0" in again, again
            figures["upgrade"], _ = run(n1.path, "upgrade", inventory, home)
            figures["rollback"], _ = run(n1.path, "rollback", inventory, home)
        finally:
            down(work / "lab", name="bench")

    print(f"media: {n.components}; left out: {len(n.left_out)} component(s) not built here")
    print(f"cold install made {changes.group(1) if changes else '?'} changes; rerun made 0")
    print(f"{'step':16} {'seconds':>8}")
    for name, seconds in figures.items():
        print(f"{name:16} {seconds:8.1f}")


if __name__ == "__main__":
    main()
