"""One client's load for the soak test: streamed chat completions, one after another, through
the client's local overlay proxy, each one's outcome written as a JSON line.

Run on a workstation of the lab (its own network namespace), standard library only:

    python soak_load.py PORT KEY OUT STOP_FILE MAX_SECONDS

It stops by itself when STOP_FILE exists or MAX_SECONDS have passed. Outcomes:
``ok`` (the stream ended with ``[DONE]``), ``refused`` (an HTTP error; ``clear`` says
whether its body was an error in OpenAI's shape), ``cut`` (the stream ended early;
``clear`` when an error event said why), ``dropped`` (the connection closed before any
answer), ``hang`` (no byte for READ_TIMEOUT seconds).
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
from pathlib import Path

#: A stream that sends nothing for this long is counted as hanging and given up.
READ_TIMEOUT = 30.0
BODY = json.dumps(
    {
        "model": "tiny",
        "max_tokens": 24,
        "stream": True,
        "messages": [{"role": "user", "content": "count slowly"}],
    }
)


def openai_error(text: str) -> bool:
    """True when ``text`` is an error in OpenAI's shape: {"error": {"message": ...}}."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and bool(error.get("message"))


def one(port: int, key: str) -> dict[str, object]:
    """One streamed completion; its outcome."""
    started = time.time()
    record: dict[str, object] = {"t0": started}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT)
    try:
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=BODY,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        answer = connection.getresponse()
        record["status"] = answer.status
        if answer.status != 200:
            text = answer.read().decode(errors="replace")
            record.update(outcome="refused", clear=openai_error(text), detail=text[:200])
            return record
        done = False
        error_event = ""
        while line := answer.readline():
            if "t_first" not in record:
                record["t_first"] = time.time()
            data = line.decode(errors="replace").strip()
            if data == "data: [DONE]":
                done = True
            elif data.startswith("data: ") and '"error"' in data:
                error_event = data[6:]
        if done and not error_event:
            record["outcome"] = "ok"
        else:
            record.update(outcome="cut", clear=openai_error(error_event), detail=error_event[:200])
    except TimeoutError:
        record.update(outcome="hang", clear=False, detail=f"no byte for {READ_TIMEOUT:.0f} s")
    except (OSError, http.client.HTTPException) as exc:
        got_answer = "status" in record
        record.update(
            outcome="cut" if got_answer else "dropped",
            clear=False,
            detail=f"{type(exc).__name__}: {exc}",
        )
    finally:
        connection.close()
        record["t_end"] = time.time()
    return record


def main() -> None:
    port, key, out, stop, limit = sys.argv[1:6]
    deadline = time.monotonic() + float(limit)
    with Path(out).open("a", encoding="utf-8") as sink:
        while time.monotonic() < deadline and not Path(stop).exists():
            record = one(int(port), key)
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            if record["outcome"] != "ok":
                time.sleep(0.5)  # a person retries, not a tight loop against a fault


if __name__ == "__main__":
    socket.setdefaulttimeout(READ_TIMEOUT)
    main()
