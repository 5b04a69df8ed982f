"""What the access proxy adds to the model path, and how fast it decides, same run.

    python benchmarks/access_proxy.py [--requests 400] [--seconds 15] [--supplied DIR]

Runs on this machine, on loopback, with the supplied upstream llm-gateway (as `make test`
takes it: $APPLIANCE_SUPPLIED or $APPLIANCE_CACHE/supplied) and a stand-in model server
that answers at once (a one-token completion with its usage), so that the model's own
time does not hide the cost being measured:

    gateway   client → llm-gateway (its own key check) → model           (the chain before)
    access    client → access front (key hash, grant, limits, reservation) → llm-gateway
              → access back (request id, usage) → model                  (the chain now)

Both one request at a time and with 8 clients, each keeping its connection open; then
the limiter's admission decisions per second on one core (admit and settle, a policy of
1,000 identities in 50 groups, each with a daily and a monthly budget and a rate limit).
Prints every figure beside its goal (issue 24: at most 1 ms added at p50).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latency import p50_p99  # noqa: E402  (benchmarks/latency.py, beside this script)

from appliance.access.limiter import Limiter  # noqa: E402
from appliance.access.policy import key_digest, parse_policy  # noqa: E402
from appliance.components.supplied import supplied_executable  # noqa: E402
from appliance.settings import supplied_dir  # noqa: E402

KEY = "sk-site-benchmark"
INTERNAL = "sk-gw-internal-benchmark"
BODY = json.dumps(
    {"model": "tiny", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
).encode()

# The stand-in model server: one-token answers with usage, streams ending in usage.
_MODEL = r"""
import json, sys, uvicorn
ANSWER = json.dumps({"id": "x", "object": "chat.completion", "model": "tiny",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "length"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model"}]}).encode()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = MODELS if scope["method"] == "GET" else ANSWER
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, loop="uvloop", http="httptools")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited at start (code {proc.returncode})")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        time.sleep(0.1)
    sys.exit(f"{what} did not listen on 127.0.0.1:{port}")


@contextlib.contextmanager
def _running(argv: list[str], port: int, what: str, log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(port, proc, what)
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def _gateway_config(folder: Path, listen: int, backend: int, key: str) -> Path:
    path = folder / f"gateway-{listen}.yaml"
    path.write_text(
        f'listen: "127.0.0.1:{listen}"\n'
        f'providers:\n  local:\n    base_url: "http://127.0.0.1:{backend}"\n'
        f"api_keys:\n  enabled: true\n  keys:\n"
        f'    - {{name: bench, key: "{key}", allowed_models: []}}\n'
    )
    return path


def _measure(port: int, key: str, requests: int, seconds: float) -> dict[str, object]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def once(conn: http.client.HTTPConnection) -> float:
        began = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", BODY, headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            sys.exit(f"127.0.0.1:{port} answered HTTP {answer.status}")
        return time.perf_counter() - began

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(20):
        once(conn)
    one = [once(conn) for _ in range(requests)]

    def worker(deadline: float) -> list[float]:
        mine = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        found = []
        while time.perf_counter() < deadline:
            found.append(once(mine))
        return found

    deadline = time.perf_counter() + seconds
    with ThreadPoolExecutor(8) as pool:
        eight = [x for part in pool.map(worker, [deadline] * 8) for x in part]
    return {"one": one, "eight": eight, "rate": len(eight) / seconds}


def _decisions(seconds: float) -> float:
    identities = {
        f"user{i}": {"groups": [f"team{i % 50}"], "models": ["tiny"]} for i in range(1000)
    }
    budget = {"tokens_per_day": 10**9, "tokens_per_month": 10**12, "requests_per_minute": 10**9}
    limits = {f"@user{i}": budget for i in range(1000)} | {f"#team{i}": budget for i in range(50)}
    document = {
        "timezone": "Europe/Berlin",
        "models": ["tiny"],
        "context_tokens": 8192,
        "keys": [],
        "identities": identities,
        "limits": {
            s: {**v, "tokens_per_week": None, "concurrent_requests": None}
            for s, v in limits.items()
        },
    }
    limiter = Limiter()
    limiter.set_policy(parse_policy("bench", document))
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for i in range(1000):
            limiter.settle(limiter.admit(f"user{i}", prompt_bound=40, max_tokens=16), 30)
        done += 1000
    return done / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--supplied", type=Path, default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="access-bench-"))
    program = supplied_executable(args.supplied or supplied_dir(), "llm-gateway", scratch / "bin")
    if program is None:
        sys.exit(
            f"no supplied llm-gateway in {args.supplied or supplied_dir()}: see docs/components.md"
        )
    model, plain, gateway, front, back = (_free_port() for _ in range(5))
    (scratch / "gateway-key").write_text(INTERNAL)
    config = scratch / "access.yaml"
    config.write_text(
        json.dumps(
            {
                "listen": f"127.0.0.1:{front}",
                "backend_listen": f"127.0.0.1:{back}",
                "gateway_url": f"http://127.0.0.1:{gateway}",
                "gateway_key_file": str(scratch / "gateway-key"),
                "backend_url": f"http://127.0.0.1:{model}",
                "data_dir": str(scratch / "data"),
                "static_keys": [{"name": "bench", "sha256": key_digest(KEY), "models": ["tiny"]}],
            }
        )
    )
    log = scratch / "processes.log"
    appliance = str(Path(sys.executable).with_name("appliance"))
    with (
        _running([sys.executable, "-c", _MODEL, str(model)], model, "the model stand-in", log),
        _running(
            [str(program), "run", str(_gateway_config(scratch, plain, model, KEY))],
            plain,
            "llm-gateway (before)",
            log,
        ),
        _running(
            [str(program), "run", str(_gateway_config(scratch, gateway, back, INTERNAL))],
            gateway,
            "llm-gateway (behind the proxy)",
            log,
        ),
        _running(
            [appliance, "access", "serve", "--config", str(config)], front, "the access proxy", log
        ),
    ):
        before = _measure(plain, KEY, args.requests, args.seconds)
        now = _measure(front, KEY, args.requests, args.seconds)
    decisions = _decisions(5)
    print(
        f"one-token chat completions on loopback, {args.requests} one at a time, then 8 "
        f"clients for {args.seconds:.0f} s ({os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d})"
    )
    print(f"{'path':<44}{'p50 ms':>8}{'p99 ms':>8}{'p50@8':>8}{'p99@8':>8}{'req/s@8':>9}")
    rows = []
    for name, found in (
        ("llm-gateway alone (before)", before),
        ("access proxy + llm-gateway (now)", now),
    ):
        p50, p99 = p50_p99([1000 * x for x in found["one"]])  # type: ignore[attr-defined]
        e50, e99 = p50_p99([1000 * x for x in found["eight"]])  # type: ignore[attr-defined]
        rows.append((p50, p99, e50, e99))
        print(f"{name:<44}{p50:>8.2f}{p99:>8.2f}{e50:>8.2f}{e99:>8.2f}{found['rate']:>9.0f}")
    added = [b - a for a, b in zip(rows[0], rows[1], strict=True)]
    print(
        f"added by the access proxy: p50 {added[0]:+.2f} ms (goal at most 1 ms), p99 "
        f"{added[1]:+.2f} ms; at 8 clients p50 {added[2]:+.2f} ms, p99 {added[3]:+.2f} ms"
    )
    print(f"admission decisions (admit + settle) on one core: {decisions:,.0f}/s")


if __name__ == "__main__":
    main()
