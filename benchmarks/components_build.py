"""Cold and warm build times of every component, and each image's size.

    python benchmarks/components_build.py [--definition bundles/lab.yaml] [--warm-only]

Cold: a fresh, temporary $APPLIANCE_CACHE (Go module and build caches, wheelhouses, the
debootstrap root filesystem, the model) and the appliance's images removed from podman's
storage, so every layer is rebuilt from upstream sources. Warm: the same build again at
once. Prints one row per component. A cold run takes several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from appliance.components.build import BuildReport, build_components
from appliance.definition import load_definition


def remove_appliance_images() -> None:
    refs = subprocess.run(
        [
            "podman",
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=localhost/appliance/*",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if refs:
        subprocess.run(["podman", "rmi", "--force", *refs], capture_output=True, check=True)


def timed(definition_path: Path, out: Path) -> tuple[float, BuildReport]:
    start = time.monotonic()
    report = build_components(load_definition(definition_path), out=out)
    return time.monotonic() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--definition", type=Path, default=Path("bundles/lab.yaml"))
    parser.add_argument("--warm-only", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-out-") as out_dir:
        out = Path(out_dir)
        runs: list[tuple[str, float, BuildReport]] = []
        if not args.warm_only:
            saved = os.environ.get("APPLIANCE_CACHE")
            with tempfile.TemporaryDirectory(prefix="bench-cache-", dir=Path.home()) as cache:
                os.environ["APPLIANCE_CACHE"] = cache
                remove_appliance_images()
                runs.append(("cold", *timed(args.definition, out)))
                runs.append(("warm", *timed(args.definition, out)))
            if saved is None:
                os.environ.pop("APPLIANCE_CACHE", None)
            else:
                os.environ["APPLIANCE_CACHE"] = saved
        else:
            runs.append(("warm", *timed(args.definition, out)))

        print(f"{'run':5} {'component':16} {'result':8} {'seconds':>8} {'size MiB':>9}")
        for label, total, report in runs:
            for result in report.results:
                entry = result.image or result.files
                size = f"{entry.size / 2**20:9.1f}" if entry else f"{'-':>9}"
                print(f"{label:5} {result.name:16} {result.status:8} {result.seconds:8.1f} {size}")
            print(f"{label:5} {'TOTAL':16} {'':8} {total:8.1f}")


if __name__ == "__main__":
    main()
