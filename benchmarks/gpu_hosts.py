"""Several GPU hosts behind one model service: how requests spread, and what a host that
stops costs the clients.

    sudo python benchmarks/gpu_hosts.py [--lab NAME] [--client DIR] [--name NAME]
                                        [--service-ms 100] [--seconds 20] [--concurrency 8]

Needs a lab installed with its overlay and two or more GPU hosts (`appliance lab up NAME
--hosts ctrl1,gw1,gpu1,gpu2`, then install.sh), and an enrolled client with its key.

So that the backend is the bottleneck (on the lab every host shares the workstation's
cores, and a second vLLM would only take CPU from the first), each GPU host's vLLM is
stopped for the run and a stand-in takes its loopback port: an OpenAI-compatible server
that serves one request at a time, SERVICE_MS each, as a GPU at capacity does. The
overlay, the gateway, the health checks and the terminators are the site's own. vLLM is
started again at the end, whatever happened.

    one host      the stand-in on the first GPU host only (the others' health checks fail)
    all hosts     a stand-in on every GPU host; after a phase unmeasured (the connections
                  made while one host served all are retired and made again over it),
                  requests counted per host
    failover      all hosts under load; the last host's stand-in is killed -9 a third of
                  the way in: failed requests, their errors, and how long after the kill
                  requests fail at all (the overlay's time to notice; goal at most 5 s)
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lab_client  # noqa: E402  (benchmarks/lab_client.py, beside this script)
from latency import percentiles  # noqa: E402  (benchmarks/latency.py, beside this script)

from appliance.lab.client import LabClient, tunnel  # noqa: E402
from appliance.lab.locate import locate, read_own_record  # noqa: E402

# The stand-in for vLLM on a GPU host: one request at a time (a lock around the work),
# keep-alive connections, the answers llm-gateway and the access proxy read.
_STAND_IN = r"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
service_s, served, lock = float(sys.argv[1]) / 1000, [0], threading.Lock()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def _json(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/v1/models":
            self._json({"object": "list", "data": [{"id": "tiny", "object": "model"},
                                                   {"id": "tiny-sensitive", "object": "model"}]})
        else:
            self._json({"served": served[0]})
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            time.sleep(service_s)
            served[0] += 1
        usage = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
        self._json({"id": "chatcmpl-standin", "object": "chat.completion",
                    "created": int(time.time()), "model": request.get("model", "tiny"),
                    "choices": [{"index": 0, "finish_reason": "length",
                                 "message": {"role": "assistant", "content": "ok"}}],
                    "usage": usage})
ThreadingHTTPServer(("127.0.0.1", 8000), Handler).serve_forever()
"""

# On the first controller host: the vllm service's terminators, {router: precedence},
# from the management API on its loopback (the password file the installer made there).
_TERMINATORS = r"""
import json, ssl, urllib.request
base = "https://127.0.0.1:1281/edge/management/v1"
ca = "/var/lib/ziti-controller/pki/root-ca/certs/root-ca.cert"
context = ssl.create_default_context(cafile=ca)
password = open("/etc/ziti-controller/admin-password").read().strip()
def call(path, body=None, token=None):
    headers = {"Content-Type": "application/json", **({"zt-session": token} if token else {})}
    data = json.dumps(body).encode() if body else None
    request = urllib.request.Request(base + path, data=data, headers=headers)
    return json.load(urllib.request.urlopen(request, context=context, timeout=10))
login = {"username": "admin", "password": password}
token = call("/authenticate?method=password", login)["data"]["token"]
service = call('/services?filter=name="vllm"', token=token)["data"][0]["id"]
found = call(f"/services/{service}/terminators", token=token)["data"]
print(json.dumps({t["router"]["name"]: t["precedence"] for t in found}))
"""

BODY = json.dumps(
    {"model": "tiny", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
).encode()


@dataclass
class Outcome:
    """One request as a client met it."""

    began: float
    ended: float
    status: int
    error: str


class GpuHost:
    """One GPU host of the lab, reached over SSH."""

    def __init__(self, name: str, run: Callable[[str], list[str]]) -> None:
        self.name, self._run = name, run

    def sh(self, command: str, *, check: bool = True) -> str:
        done = subprocess.run(
            self._run(command), capture_output=True, text=True, timeout=300, check=False
        )
        if check and done.returncode != 0:
            raise SystemExit(f"{self.name}: {command!r} failed: {done.stderr.strip()}")
        return done.stdout

    def start_stand_in(self, service_ms: float) -> None:
        command = f"python3 -c {shlex.quote(_STAND_IN)} {service_ms}"
        self.sh(f"nohup {command} </dev/null >/dev/null 2>&1 & echo $! > /run/bench-stand-in.pid")
        self.sh(
            "for i in $(seq 50); do python3 -c 'import urllib.request as u; "
            'u.urlopen("http://127.0.0.1:8000/health", timeout=1)\' 2>/dev/null && exit 0; '
            "sleep 0.1; done; exit 1"
        )

    def kill_stand_in(self) -> None:
        self.sh(
            "[ -f /run/bench-stand-in.pid ] && kill -9 $(cat /run/bench-stand-in.pid); "
            "rm -f /run/bench-stand-in.pid; true",
            check=False,
        )

    def served(self) -> int:
        answer = self.sh(
            "python3 -c 'import urllib.request as u; "
            'print(u.urlopen("http://127.0.0.1:8000/stats").read().decode())\''
        )
        return int(json.loads(answer)["served"])


class Controller:
    """The first controller host, for the terminators' state."""

    def __init__(self, run: Callable[[str], list[str]]) -> None:
        self._run = run

    def precedences(self) -> dict[str, str]:
        done = subprocess.run(
            self._run(f"python3 -c {shlex.quote(_TERMINATORS)}"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return json.loads(done.stdout) if done.returncode == 0 else {}


def _load(
    port: int, key: str, seconds: float, concurrency: int, at: Callable[[float], None] | None
) -> list[Outcome]:
    """CONCURRENCY clients on keep-alive connections for SECONDS; ``at`` runs a third in."""
    import http.client

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def worker(_: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                conn.request("POST", "/v1/chat/completions", BODY, headers)
                answer = conn.getresponse()
                body = answer.read()
                status, error = answer.status, ""
                if status != 200:
                    error = json.loads(body).get("error", {}).get("message", body[:200].decode())
            except (OSError, http.client.HTTPException, ValueError) as exc:
                status, error = 0, f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                outcomes.append(Outcome(began - start, time.perf_counter() - start, status, error))

    with ThreadPoolExecutor(concurrency + 1) as pool:
        futures = [pool.submit(worker, i) for i in range(concurrency)]
        if at is not None:
            time.sleep(seconds / 3)
            at(time.perf_counter() - start)
        for future in futures:
            future.result()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lab_client.add_arguments(parser)
    parser.add_argument("--service-ms", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    identity, key_file, ziti = lab_client.enrolled(args)
    lab = locate(args.lab, None)
    record = read_own_record(lab)
    if record is None:
        sys.exit(f"no lab {lab.name}")
    hosts = [
        GpuHost(m.name, lambda c, a=m.site_address: lab.layout.ssh.argv(a, c))
        for m in record.plan.machines
        if m.group == "gpu"
    ]
    if len(hosts) < 2:
        sys.exit(f"lab {lab.name} has {len(hosts)} GPU host; bring one up with two or more")
    controller = Controller(
        next(
            lambda c, a=m.site_address: lab.layout.ssh.argv(a, c)
            for m in record.plan.machines
            if m.group == "controller"
        )
    )
    key = key_file.read_text().strip()
    client = LabClient(args.name, identity, key_file, ziti)
    settle = 5.0  # health checks: 1 s apart, two failures mark a host failed, one pass healthy
    try:
        for host in hosts:
            host.sh("systemctl stop appliance-vllm.service")
        with tunnel(client, args.client / f"{args.name}.gpu-hosts.log") as port:
            hosts[0].start_stand_in(args.service_ms)
            time.sleep(settle)
            one = _load(port, key, args.seconds, args.concurrency, None)
            for host in hosts[1:]:
                host.start_stand_in(args.service_ms)
            time.sleep(settle)
            # The access proxy's connections to the model service were all made to the
            # first host; it retires one every 2 s and the new circuits spread (ADR 0022).
            _load(port, key, args.seconds, args.concurrency, None)
            before = [h.served() for h in hosts]
            every = _load(port, key, args.seconds, args.concurrency, None)
            spread = [h.served() - b for h, b in zip(hosts, before, strict=True)]
            killed: list[float] = []

            def kill(at: float) -> None:
                hosts[-1].kill_stand_in()
                killed.append(at)

            noticed: list[float] = []

            def watch() -> None:
                # How long the overlay takes to mark the killed host's terminator failed.
                while not killed and not done.is_set():
                    time.sleep(0.05)
                while killed and not done.is_set():
                    if controller.precedences().get(hosts[-1].name) == "failed":
                        noticed.append(time.perf_counter() - started[0] - killed[0])
                        return
                    time.sleep(0.2)

            done, started = threading.Event(), [time.perf_counter()]
            watcher = threading.Thread(target=watch)
            watcher.start()
            failover = _load(port, key, args.seconds, args.concurrency, kill)
            done.set()
            watcher.join()
    finally:
        for host in hosts:
            host.kill_stand_in()
            host.sh("systemctl start appliance-vllm.service", check=False)
    _report(args, hosts, one, every, spread, failover, killed[0], noticed)


def _rate(outcomes: list[Outcome], seconds: float) -> float:
    return sum(1 for o in outcomes if o.status == 200) / seconds


def _report(
    args: argparse.Namespace,
    hosts: list[GpuHost],
    one: list[Outcome],
    every: list[Outcome],
    spread: list[int],
    failover: list[Outcome],
    killed_at: float,
    noticed: list[float],
) -> None:
    n = len(hosts)
    print(
        f"stand-in model servers ({args.service_ms:.0f} ms a request, one at a time) on "
        f"{n} GPU hosts; {args.concurrency} clients for {args.seconds:.0f} s a phase"
    )
    rate_one, rate_all = _rate(one, args.seconds), _rate(every, args.seconds)
    print(f"one host         {rate_one:7.1f} req/s   failed {sum(o.status != 200 for o in one)}")
    print(
        f"{n} hosts          {rate_all:7.1f} req/s   failed {sum(o.status != 200 for o in every)}"
        f"   served per host {spread}"
    )
    print(f"scaling          {rate_all / rate_one:7.2f}x   goal at least {0.9 * n:.1f}x")
    failed = [o for o in failover if o.status != 200]
    in_flight = [o for o in failover if o.began <= killed_at < o.ended]
    print(
        f"failover         {hosts[-1].name}'s model server killed -9 at {killed_at:.1f} s: "
        f"{len(failed)} of {len(failover)} requests failed; {len(in_flight)} were in flight, "
        f"{sum(o.status == 200 for o in in_flight)} of them answered"
    )
    seen = f"{noticed[0]:.1f} s" if noticed else "not within the phase"
    print(f"                 marked failed by its health check after {seen}   goal at most 5 s")
    if failed:
        last = max(o.ended for o in failed) - killed_at
        print(f"                 last failed request ended {last:.1f} s after the kill")
    slowest = max(failover, key=lambda o: o.ended - o.began)
    times = percentiles([o.ended - o.began for o in failover])
    print(
        f"                 every request's time: {times}; the slowest began "
        f"{slowest.began - killed_at:+.1f} s from the kill"
    )
    for error in sorted({f"HTTP {o.status}: {o.error}" for o in failed})[:5]:
        print(f"                 {error}")


if __name__ == "__main__":
    main()
