"""Chat completions through the llm-gateway and the overlay against vLLM directly, same run.

    sudo python benchmarks/gateway_overlay.py [--lab default] [--client DIR] [--name demo-client]
                                              [--requests 200] [--seconds 30] [--concurrency 8]

Needs a lab installed with its overlay and an enrolled client with its key, as `make demo`
leaves them (the client in $APPLIANCE_CACHE/demo/client). Both paths ask for the same
one-token completion of the same prompt, one request at a time and then CONCURRENCY at
once:

    direct    on the gpu host itself, HTTP to vLLM on its loopback (what nothing else can
              reach: the baseline)
    overlay   from the workstation, outside every host: local `ziti tunnel proxy` → public
              router on the LAN → router link → the gateway host's tunneler → llm-gateway
              (key check, routing) → loopback proxy → overlay → the gpu host's tunneler → vLLM

Every client keeps its connection open between requests (as HTTP clients and SDKs do):
opening a connection through the local proxy dials a new circuit, timed on its own.
Prints p50/p99 of each, the latency the gateway and overlay add, and throughput.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latency import p50_p99  # noqa: E402  (benchmarks/latency.py, beside this script)

from appliance.lab.client import LabClient, tunnel  # noqa: E402
from appliance.lab.locate import locate, read_own_record  # noqa: E402
from appliance.settings import cache_dir, supplied_dir  # noqa: E402

BODY = {
    "model": "tiny",
    "max_tokens": 1,
    "temperature": 0,
    "messages": [{"role": "user", "content": "hi"}],
}

# Runs on the gpu host with its python3: the same measurements against vLLM on loopback.
_DIRECT = r"""
import http.client, json, sys, time
from concurrent.futures import ThreadPoolExecutor
body, requests, seconds, concurrency = json.loads(sys.argv[1])
payload = json.dumps(body).encode()
def once(conn):
    began = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", payload, {"Content-Type": "application/json"})
    answer = conn.getresponse(); answer.read()
    assert answer.status == 200, answer.status
    return time.perf_counter() - began
conn = http.client.HTTPConnection("127.0.0.1", 8000, timeout=120)
for _ in range(5):
    once(conn)
latencies = [once(conn) for _ in range(requests)]
def worker(deadline):
    mine, done = http.client.HTTPConnection("127.0.0.1", 8000, timeout=120), 0
    while time.perf_counter() < deadline:
        once(mine); done += 1
    return done
deadline = time.perf_counter() + seconds
with ThreadPoolExecutor(concurrency) as pool:
    total = sum(pool.map(worker, [deadline] * concurrency))
print(json.dumps({"latencies": latencies, "throughput": total / seconds}))
"""


def _overlay(
    port: int, key: str, requests: int, seconds: float, concurrency: int
) -> dict[str, object]:
    payload = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def once(conn: http.client.HTTPConnection) -> float:
        began = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", payload, headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            sys.exit(f"the gateway answered HTTP {answer.status}")
        return time.perf_counter() - began

    def fresh() -> float:
        conn = connect()
        try:
            return once(conn)
        finally:
            conn.close()

    conn = connect()
    for _ in range(5):
        once(conn)
    latencies = [once(conn) for _ in range(requests)]
    # Each new TCP connection to the local proxy is a new circuit across the overlay.
    dials = [fresh() for _ in range(min(requests, 50))]

    def worker(deadline: float) -> int:
        mine, done = connect(), 0
        while time.perf_counter() < deadline:
            once(mine)
            done += 1
        return done

    deadline = time.perf_counter() + seconds
    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(worker, [deadline] * concurrency))
    return {"latencies": latencies, "throughput": total / seconds, "dials": dials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default=None, help="the lab (default: the demo's)")
    parser.add_argument("--client", type=Path, default=cache_dir() / "demo" / "client")
    parser.add_argument("--name", default="demo-client")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the lab needs root")
    identity, key_file = args.client / f"{args.name}.json", args.client / f"{args.name}.key"
    ziti = supplied_dir() / "ziti"
    if not (identity.exists() and key_file.exists() and ziti.exists()):
        sys.exit(
            f"no enrolled client {args.name} in {args.client} or no ziti in {supplied_dir()}: "
            "run make demo with supplied OpenZiti programs first"
        )
    lab = locate(args.lab, None)
    record = read_own_record(lab)
    if record is None:
        sys.exit(f"no lab {lab.name}: run make demo first")
    gpu = next(m for m in record.plan.machines if m.group == "gpu")

    payload = json.dumps([BODY, args.requests, args.seconds, args.concurrency])
    command = f"python3 -c {shlex.quote(_DIRECT)} {shlex.quote(payload)}"
    done = subprocess.run(
        lab.layout.ssh.argv(gpu.site_address, command),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"the direct measurement on {gpu.name} failed: {done.stderr}")
    direct = json.loads(done.stdout)

    client = LabClient(args.name, identity, key_file, ziti)
    with tunnel(client, args.client / f"{args.name}.bench.log") as port:
        overlay = _overlay(
            port, key_file.read_text().strip(), args.requests, args.seconds, args.concurrency
        )

    rows = []
    for name, found in (
        ("direct vLLM (gpu host loopback)", direct),
        ("gateway + overlay (workstation)", overlay),
    ):
        ms = [1000 * x for x in found["latencies"]]  # type: ignore[attr-defined]
        p50, p99 = p50_p99(ms)
        rows.append((name, p50, p99, statistics.mean(ms), float(found["throughput"])))  # type: ignore[arg-type]
    print(
        f"one-token chat completions, {args.requests} one at a time, then {args.concurrency} "
        f"clients for {args.seconds:.0f} s; lab {lab.name}"
    )
    print(f"{'path':<34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'req/s':>9}")
    for name, p50, p99, mean, rate in rows:
        print(f"{name:<34}{p50:>9.1f}{p99:>9.1f}{mean:>9.1f}{rate:>9.1f}")
    added50, added99 = rows[1][1] - rows[0][1], rows[1][2] - rows[0][2]
    print(
        f"added by gateway + overlay: p50 {added50:+.1f} ms (target at most 5 ms), "
        f"p99 {added99:+.1f} ms; throughput {rows[1][4] / rows[0][4]:.0%} of direct"
    )
    dial50, dial99 = p50_p99([1000 * x for x in overlay["dials"]])  # type: ignore[attr-defined]
    print(
        f"a new connection for each request (a new circuit each): p50 {dial50:.1f} ms, "
        f"p99 {dial99:.1f} ms (n={len(overlay['dials'])})"  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
