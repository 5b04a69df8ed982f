#!/usr/bin/python3
"""Health probe, run on the controller host: a chat completion from the llm-gateway through
the overlay, as a client gets one. The installer's own identity dials the gateway service
through a local `ziti tunnel proxy` (loopback only), over the LAN to the public router; the
gateway reaches vLLM through the overlay in turn. Prints one JSON object; never fails.

    overlay_chat_probe.py IMAGE IDENTITY KEY_FILE PORT MODEL
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

NAME = "appliance-health-probe"


def main() -> None:
    image, identity, key_file, port, model = sys.argv[1:6]
    report: dict[str, object] = {"status": 0, "seconds": 0.0, "error": ""}
    subprocess.run(["podman", "rm", "--force", "--ignore", NAME], capture_output=True, check=False)
    started = subprocess.run(
        [
            "podman",
            "run",
            "--detach",
            "--rm",
            "--name",
            NAME,
            "--pull=never",
            "--network=host",
            "--tmpfs=/tmp",
            f"--volume={identity}:/probe.json:ro",
            image,
            "tunnel",
            "proxy",
            f"llm-gateway:{port}",
            "-i",
            "/probe.json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        report["error"] = f"the probe's tunnel proxy did not start: {started.stderr.strip()}"
        print(json.dumps(report))
        return
    try:
        report.update(_chat(int(port), key_file, model))
    finally:
        subprocess.run(["podman", "rm", "--force", NAME], capture_output=True, check=False)
    print(json.dumps(report))


def _chat(port: int, key_file: str, model: str) -> dict[str, object]:
    # Short on purpose: the playbook's retries do the waiting, so one attempt never holds
    # a health check (or a rollback's) for minutes.
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                return {"error": "the probe's tunnel proxy never listened (no terminator?)"}
            time.sleep(0.5)
    key = Path(key_file).read_text(encoding="utf-8").strip()
    body = json.dumps(
        {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "health"}]}
    ).encode()
    last = ""
    # The proxy listens before the gateway's terminator is known to it: retry a little.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        began = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 (http to loopback)
                answer.read()
                return {"status": answer.status, "seconds": round(time.monotonic() - began, 3)}
        except urllib.error.HTTPError as error:
            return {"status": error.code, "error": error.read().decode(errors="replace")[:300]}
        except OSError as error:
            last = str(error)
            time.sleep(1)
    return {"error": f"no answer through the overlay: {last}"}


if __name__ == "__main__":
    main()
