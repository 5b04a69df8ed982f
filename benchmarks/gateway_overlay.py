"""Chat completions through the llm-gateway and the overlay against vLLM directly, same run,
and the CPU each process on the path spends per request.

    sudo python benchmarks/gateway_overlay.py [--lab default] [--client DIR] [--name demo-client]
                                              [--requests 200] [--seconds 30] [--concurrency 8]
                                              [--stream-tokens 64]

Needs a lab installed with its overlay and an enrolled client with its key, as `make demo`
leaves them (the client in $APPLIANCE_CACHE/demo/client). Both paths ask for the same
completion of the same prompt: one token, one request at a time and then CONCURRENCY at
once; then streamed completions of up to STREAM_TOKENS tokens, CONCURRENCY at once.

    direct    on the gpu host itself, HTTP to vLLM on its loopback (what nothing else can
              reach: the baseline)
    overlay   from the workstation, outside every host: local `ziti tunnel proxy` → public
              router on the LAN → the gateway host's router tunneler → access proxy →
              llm-gateway → access proxy → loopback `ziti tunnel proxy` → overlay → the gpu
              host's router tunneler → vLLM

Every client keeps its connection open between requests (as HTTP clients and SDKs do):
opening a connection through the local proxy dials a new circuit, timed on its own.
Prints p50/p99 of each, the latency the gateway and overlay add, throughput, and for each
loaded phase the CPU every process on every machine used per request (benchmarks/hops.py),
each figure beside its goal (issue: the model path at the overlay's speed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import hops  # noqa: E402  (benchmarks/hops.py, beside this script)
import lab_client  # noqa: E402  (benchmarks/lab_client.py, beside this script)
from latency import p50_p99  # noqa: E402  (benchmarks/latency.py, beside this script)

from appliance.lab.client import LabClient, tunnel  # noqa: E402
from appliance.lab.locate import locate, read_own_record  # noqa: E402

BODY = {
    "model": "tiny",
    "max_tokens": 1,
    "temperature": 0,
    "messages": [{"role": "user", "content": "hi"}],
}

# The clients, run with python3 on the gpu host (direct) or here (overlay), one phase per
# run so that the CPU readings bracket exactly the loaded phases; a loaded phase prints
# its own CPU time (it starts and ends between the readings).
_CLIENT = r"""
import http.client, json, sys, time
from concurrent.futures import ThreadPoolExecutor
a = json.loads(sys.argv[1])
headers = {"Content-Type": "application/json", **a["headers"]}
plain = json.dumps(a["body"]).encode()
streamed = json.dumps({**a["body"], "max_tokens": a["stream_tokens"], "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
def connect():
    return http.client.HTTPConnection("127.0.0.1", a["port"], timeout=120)
def once(conn, payload=plain):
    began = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", payload, headers)
    answer = conn.getresponse(); body = answer.read()
    if answer.status != 200:
        sys.exit(f"HTTP {answer.status}: {body[:300]!r}")
    tokens = 0
    if payload is streamed:
        for line in body.splitlines():
            if line.startswith(b"data: {") and b'"usage"' in line:
                usage = json.loads(line[6:]).get("usage") or {}
                tokens = usage.get("completion_tokens", tokens)
    return time.perf_counter() - began, tokens
def fresh():
    conn = connect()
    try:
        return once(conn)[0]
    finally:
        conn.close()
def worker(payload):
    mine, done, tokens = connect(), 0, 0
    deadline = time.perf_counter() + a["seconds"]
    while time.perf_counter() < deadline:
        tokens += once(mine, payload)[1]; done += 1
    return done, tokens
phase = a["phase"]
if phase == "latency":
    conn = connect()
    for _ in range(5):
        once(conn)
    print(json.dumps({"latencies": [once(conn)[0] for _ in range(a["requests"])]}))
elif phase == "dials":
    print(json.dumps({"latencies": [fresh() for _ in range(min(a["requests"], 50))]}))
else:
    payload = streamed if phase == "stream" else plain
    with ThreadPoolExecutor(a["concurrency"]) as pool:
        results = list(pool.map(worker, [payload] * a["concurrency"]))
    print(json.dumps({"requests": sum(r[0] for r in results),
                      "tokens": sum(r[1] for r in results), "own_cpu": time.process_time()}))
"""

Run = Callable[[str], list[str]]


def _phase(
    where: Run, phase: str, port: int, headers: dict[str, str], args: argparse.Namespace
) -> dict:
    arguments = {
        "phase": phase,
        "port": port,
        "headers": headers,
        "body": BODY,
        "requests": args.requests,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "stream_tokens": args.stream_tokens,
    }
    command = f"python3 -c {shlex.quote(_CLIENT)} {shlex.quote(json.dumps(arguments))}"
    done = subprocess.run(where(command), capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        sys.exit(f"the {phase} phase failed: {done.stderr.strip() or done.stdout.strip()}")
    return json.loads(done.stdout)


def _measure(
    machine: str,
    where: Run,
    port: int,
    headers: dict[str, str],
    args: argparse.Namespace,
    machines: dict[str, Run],
    *,
    dials: bool,
) -> dict:
    """Every phase on one path; the loaded ones with each process's CPU around them."""
    found: dict = {"latencies": _phase(where, "latency", port, headers, args)["latencies"]}
    if dials:
        found["dials"] = _phase(where, "dials", port, headers, args)["latencies"]
    for phase in ("load", "stream"):
        before = hops.read(machines)
        counted = _phase(where, phase, port, headers, args)
        used = hops.spent(before, hops.read(machines))
        # The clients' process lived between the readings: it says its own CPU time.
        used[(machine, "benchmark clients")] = counted["own_cpu"]
        found[phase] = counted | {"cpu": used}
    return found


def _summary(name: str, found: dict) -> tuple[str, float, float, float]:
    ms = [1000 * x for x in found["latencies"]]
    p50, p99 = p50_p99(ms)
    return name, p50, p99, statistics.mean(ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lab_client.add_arguments(parser)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stream-tokens", type=int, default=64)
    args = parser.parse_args()
    identity, key_file, ziti = lab_client.enrolled(args)
    lab = locate(args.lab, None)
    record = read_own_record(lab)
    if record is None:
        sys.exit(f"no lab {lab.name}: run make demo first")
    gpu = next(m for m in record.plan.machines if m.group == "gpu")
    machines: dict[str, Run] = {
        m.name: (lambda command, address=m.site_address: lab.layout.ssh.argv(address, command))
        for m in record.plan.machines
    }
    here: Run = lambda command: ["sh", "-c", command]  # noqa: E731
    machines["workstation"] = here

    direct = _measure(gpu.name, machines[gpu.name], 8000, {}, args, machines, dials=False)
    client = LabClient(args.name, identity, key_file, ziti)
    key = key_file.read_text().strip()
    with tunnel(client, args.client / f"{args.name}.bench.log") as port:
        overlay = _measure(
            "workstation",
            here,
            port,
            {"Authorization": f"Bearer {key}"},
            args,
            machines,
            dials=True,
        )
    _report(args, lab.name, direct, overlay)


def _report(args: argparse.Namespace, lab: str, direct: dict, overlay: dict) -> None:
    rows = [
        _summary("direct vLLM (gpu host loopback)", direct),
        _summary("gateway + overlay (workstation)", overlay),
    ]
    rate = [found["load"]["requests"] / args.seconds for found in (direct, overlay)]
    tokens = [found["stream"]["tokens"] / args.seconds for found in (direct, overlay)]
    print(
        f"one-token chat completions, {args.requests} one at a time, then {args.concurrency} "
        f"clients for {args.seconds:.0f} s; then {args.concurrency} clients streaming up to "
        f"{args.stream_tokens} tokens for {args.seconds:.0f} s; lab {lab}"
    )
    print(f"{'path':<34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'req/s':>9}{'tok/s':>9}")
    for (name, p50, p99, mean), r, t in zip(rows, rate, tokens, strict=True):
        print(f"{name:<34}{p50:>9.1f}{p99:>9.1f}{mean:>9.1f}{r:>9.1f}{t:>9.1f}")
    added50, added99 = rows[1][1] - rows[0][1], rows[1][2] - rows[0][2]
    dial50, dial99 = p50_p99([1000 * x for x in overlay["dials"]])
    ratio, streamed = rate[1] / rate[0], tokens[1] / max(tokens[0], 1)
    lines = [
        f"p50 added by gateway + overlay   {added50:+7.1f} ms   goal at most +3 ms "
        f"(p99 {added99:+.1f} ms)",
        f"req/s at {args.concurrency} clients{'':12}{ratio:7.0%} of direct   goal at least 80 %",
        f"streamed tokens/s                {streamed:7.0%} of direct   goal at least 90 %",
        f"a request on a new connection    {dial50 - rows[0][1]:+7.1f} ms p50 added   goal at most "
        f"+10 ms (p50 {dial50:.1f} ms, p99 {dial99:.1f} ms, n={len(overlay['dials'])})",
    ]
    print("\n".join(lines))
    for name, found in (("direct", direct), ("overlay", overlay)):
        for phase, what in (("load", "one-token requests"), ("stream", "streamed completions")):
            counted = found[phase]
            print(
                f"\nCPU per request, {name}, {what} ({counted['requests']} requests"
                + (f", {counted['tokens']} tokens)" if phase == "stream" else ")")
            )
            for line in hops.table(
                counted["cpu"], counted["requests"], counted["tokens"] if phase == "stream" else 0
            ):
                print(line)


if __name__ == "__main__":
    main()
