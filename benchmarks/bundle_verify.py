"""Bundle verification throughput next to `sha256sum` over the same files, in one run.

    python benchmarks/bundle_verify.py [--size-gb 2.2] [--work DIR]

Builds (once, then reused) a signed bundle of at least --size-gb: the lab's vLLM image
archive when `make demo` has built it, topped up with random files of 256 MiB. Then, with
the files in the page cache for both, it times `sha256sum` over the stored targets, and
`verify_bundle` on one worker and on every core. Prints MB/s, the ratio to sha256sum,
and how many cores each run kept busy (CPU time / wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from appliance.bundle.builder import build_bundle
from appliance.bundle.signing import init_keys
from appliance.crypto.keys import fingerprint
from appliance.definition import load_definition
from appliance.media.reader import DirectoryReader
from appliance.media.verify import TrustAnchor, verify_bundle
from appliance.settings import cache_dir

REPO = Path(__file__).resolve().parents[1]
CHUNK = 256 * 2**20


def prepare(work: Path, size: int) -> Path:
    bundle = work / "bundle"
    if bundle.is_dir():
        return bundle
    work.mkdir(parents=True, exist_ok=True)
    components: list[dict[str, object]] = []
    total = 0
    vllm = REPO / "build/components/vllm.oci.tar"

    # Paths in the definition are relative to its root: "/" here, so both the repository's
    # build/ and the work folder can be named.
    def rel(path: Path) -> str:
        return str(path.resolve().relative_to("/"))

    if vllm.is_file():
        components.append({"name": "vllm", "version": "0.32.0", "image": rel(vllm)})
        total += vllm.stat().st_size
    filler = work / "filler"
    filler.mkdir(exist_ok=True)
    index = 0
    while total < size:
        path = filler / f"blob{index:03d}.bin"
        if not path.exists():
            with path.open("wb") as handle:
                for _ in range(CHUNK // 2**20):
                    handle.write(os.urandom(2**20))
        total += CHUNK
        index += 1
    components.append({"name": "filler", "version": "1", "files": [{"path": rel(filler)}]})
    (work / "bench.yaml").write_text(
        json.dumps(
            {
                "name": "bench",
                "version": "1.0",
                "root": os.path.relpath("/", work),
                "components": components,
            }
        )
    )
    keys = work / "keys"
    if not keys.exists():
        init_keys(keys)
    definition = load_definition(work / "bench.yaml")
    build_bundle(definition, keys, bundle)
    return bundle


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process and its children) of ``action``."""
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    action()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(
        a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime
        for a, b in zip(after, before, strict=True)
    )
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.2)
    parser.add_argument("--work", type=Path, default=cache_dir() / "bench" / "bundle-verify")
    args = parser.parse_args()

    bundle = prepare(args.work, int(args.size_gb * 2**30))
    files = sorted((bundle / "targets/sha256").iterdir())
    size = sum(f.stat().st_size for f in files)
    anchor = TrustAnchor(fingerprint=fingerprint((bundle / "metadata/1.root.json").read_bytes()))
    large = sum(1 for f in files if f.stat().st_size >= 64 * 2**20)
    print(f"bundle: {size / 1e9:.2f} GB in {len(files)} files ({large} of 64 MiB or more)")

    def sha256sum() -> None:
        subprocess.run(["sha256sum", *map(str, files)], check=True, stdout=subprocess.DEVNULL)

    def openssl() -> None:
        subprocess.run(
            ["openssl", "dgst", "-sha256", *map(str, files)], check=True, stdout=subprocess.DEVNULL
        )

    # coreutils' sha256sum does not use the CPU's SHA extensions; OpenSSL (which Python's
    # hashlib uses) does, so `openssl dgst` is the fairer single-core reference.
    runs: dict[str, Callable[[], object]] = {
        "sha256sum (1 process)": sha256sum,
        "openssl dgst (1 process)": openssl,
        "verify, 1 worker": lambda: verify_bundle(DirectoryReader(bundle), anchor, workers=1),
        f"verify, {os.cpu_count()} workers": lambda: verify_bundle(DirectoryReader(bundle), anchor),
    }
    sha256sum()  # warm the page cache so every run reads from memory alike
    results: dict[str, tuple[float, float]] = {}
    for name, action in runs.items():
        results[name] = min((timed(action) for _ in range(3)), key=lambda r: r[0])
    base = size / results["sha256sum (1 process)"][0] / 1e6
    fair = size / results["openssl dgst (1 process)"][0] / 1e6
    print(f"{'run':26} {'MB/s':>8} {'vs sha256sum':>13} {'vs openssl':>11} {'cores busy':>11}")
    for name, (wall, cpu) in results.items():
        rate = size / wall / 1e6
        print(f"{name:26} {rate:8.0f} {rate / base:12.0%} {rate / fair:10.0%} {cpu / wall:11.2f}")


if __name__ == "__main__":
    main()
