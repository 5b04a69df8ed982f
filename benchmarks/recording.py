"""What recording a vendor's shell costs: throughput of a large output, latency per keystroke.

    python benchmarks/recording.py [--megabytes 100] [--write-kib 16] [--keystrokes 5000]
                                   [--dir DIR]

* Throughput: --megabytes of terminal output (printable text, then random bytes, which
  are stored as base64) in --write-kib writes through the recorder with its default
  limits (8 MiB chunks: fsync and chain on each), next to the same writes straight to a
  file with one fsync at the end. The goal (issue 26) is that a 100 MB ``cat`` through the
  proxy keeps 0.8x plain SSH's throughput; plain SSH moves a few hundred MB/s on one
  core, so the recorder must move several times that for its share to stay small.
* Latency: one keystroke as the proxy records it: the input event (before forwarding),
  then its echo (the output event and the typed text); p50 and p99 of the pair. Goal:
  at most 2 ms p50 added to a keystroke's echo.

DIR (default: a temporary folder) should be on the disk that will hold recordings: the
figures include its fsyncs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from latency import p50_p99  # benchmarks/latency.py, beside this script

from appliance.breakglass.recording.interface import SessionInfo
from appliance.breakglass.recording.recorder import start_recording

KEY = ec.generate_private_key(ec.SECP384R1())


def _raw(folder: Path, blocks: list[bytes], total: int) -> float:
    """Seconds to write ``total`` bytes of ``blocks`` to one file, fsync at the end."""
    path = folder / "raw"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    started = time.perf_counter()
    written = 0
    try:
        while written < total:
            block = blocks[(written // len(blocks[0])) % len(blocks)]
            os.write(fd, block)
            written += len(block)
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def _recorded(folder: Path, name: str, blocks: list[bytes], total: int) -> tuple[float, int]:
    """Seconds to record ``total`` bytes of output and seal; bytes on disk."""
    recording = start_recording(folder, SessionInfo(1, name, "eve", "gpu1"), KEY)
    recording.channel_opened(0, "shell", term="xterm", width=200, height=50)
    started = time.perf_counter()
    written = 0
    while written < total:
        block = blocks[(written // len(blocks[0])) % len(blocks)]
        recording.output(0, block)
        written += len(block)
    sealed = recording.end("benchmark")
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in sealed.path.iterdir())
    return seconds, size


def _keystrokes(folder: Path, count: int) -> list[float]:
    """Seconds to record each keystroke and its echo."""
    recording = start_recording(folder, SessionInfo(1, "keys", "eve", "gpu1"), KEY)
    recording.channel_opened(0, "shell", term="xterm", width=200, height=50)
    samples = []
    for n in range(count):
        key = bytes([97 + n % 26])
        started = time.perf_counter()
        recording.input(0, key)
        recording.output(0, key)
        samples.append(time.perf_counter() - started)
    recording.end("benchmark")
    return samples


def main() -> None:
    """Print each figure beside its goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--write-kib", type=int, default=16)
    parser.add_argument("--keystrokes", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument(
        "--ssh-mbps", type=float, default=300.0, help="plain SSH's throughput here (measure it)"
    )
    args = parser.parse_args()
    total = args.megabytes * 1_000_000
    size = args.write_kib * 1024
    line = b"".join(
        f"{n:08d} the quick brown fox jumps over the lazy dog; drwxr-xr-x root\r\n".encode()
        for n in range(size // 64 + 1)
    )[:size]
    text = [line]
    binary = [os.urandom(size) for _ in range(64)]
    folder = Path(tempfile.mkdtemp(prefix="recording-bench-", dir=args.dir))
    try:
        mb = total / 1e6
        print(f"{args.megabytes} MB of output in {args.write_kib} KiB writes, in {folder}")
        ssh = args.ssh_mbps
        for label, blocks in (("text", text), ("binary", binary)):
            raw = _raw(folder, blocks, total)
            seconds, on_disk = _recorded(folder, label, blocks, total)
            rate = mb / seconds
            print(
                f"  {label:6}  recorder {rate:7.0f} MB/s   raw file writes "
                f"{mb / raw:7.0f} MB/s   ({seconds / raw:4.1f}x the time; "
                f"{on_disk / total:4.2f} bytes on disk per byte); in series with SSH at "
                f"{ssh:.0f} MB/s it keeps {rate / (rate + ssh):4.2f}x   goal: >= 0.80x"
            )
        samples = _keystrokes(folder, args.keystrokes)
        p50, p99 = p50_p99(samples)
        print(
            f"keystroke + echo recorded: p50 {p50 * 1000:.3f} ms  p99 {p99 * 1000:.3f} ms  "
            f"max {max(samples) * 1000:.3f} ms (n={len(samples)})   goal: p50 <= 2 ms"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
