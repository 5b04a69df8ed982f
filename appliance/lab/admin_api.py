"""Calls of the admin service's API on the host that runs it (it listens on that host's
loopback only): a small script run there over SSH, answers read back as JSON.

Used by `appliance lab client` and by the lab tests, the one way to drive the installed
admin service from outside its host.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from typing import Any

from appliance.errors import LabError

__all__ = ["AdminCallError", "Runner", "admin_calls"]

#: Runs on the admin host with the standard library only. Input on stdin: {"user",
#: "password", optional "new_password" (the one-time password is changed to it first),
#: "calls": [[method, path, body], ...]}. Output: {"answers": [[status, body], ...]} (a body
#: that is not JSON, such as an evidence archive, as {"base64": ...}), or
#: {"refused": [status, body]} when the login (or the password change) was refused.
_SCRIPT = r"""
import base64, http.cookiejar, json, ssl, sys, urllib.error, urllib.request
base = "https://127.0.0.1:8443/api/v1"
context = ssl.create_default_context(cafile="/etc/appliance-admin/tls/cert.pem")
opener = urllib.request.build_opener(
    urllib.request.HTTPSHandler(context=context),
    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
)
def call(method, path, body=None, csrf=None):
    headers = {"Content-Type": "application/json"}
    if csrf:
        headers["X-CSRF-Token"] = csrf
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with opener.open(request, timeout=60) as response:
            text = response.read()
            if text and response.headers.get_content_type() != "application/json":
                return [response.status, {"base64": base64.b64encode(text).decode()}]
            return [response.status, json.loads(text) if text else None]
    except urllib.error.HTTPError as error:
        return [error.code, error.read().decode()]
def login(password):
    return call("POST", "/auth/login", {"username": args["user"], "password": password})
args = json.loads(sys.stdin.read())
status, body = login(args["password"])
if status == 200 and args.get("new_password"):
    changed = call("POST", "/auth/password", {"current_password": args["password"],
                   "new_password": args["new_password"]}, body["csrf_token"])
    status, body = login(args["new_password"]) if changed[0] == 204 else changed
if status != 200:
    print(json.dumps({"refused": [status, body]}))
    sys.exit(0)
print(json.dumps({"answers": [call(m, p, b, body["csrf_token"]) for m, p, b in args["calls"]]}))
"""

#: Runs a shell command on the admin host with the given stdin.
Runner = Callable[[str, str], subprocess.CompletedProcess[str]]


class AdminCallError(LabError):
    """The script could not run on the admin host, or its login was refused."""

    #: A refused login's status and body, as the admin service answered it.
    status: int | None = None
    body: object = None


def admin_calls(
    run: Runner,
    user: str,
    password: str,
    calls: list[tuple[str, str, object]],
    *,
    new_password: str | None = None,
) -> list[list[Any]]:
    """[status, body] for each call, made in one session as ``user``; with
    ``new_password`` the account's one-time ``password`` is changed to it first."""
    payload = {"user": user, "password": password, "calls": calls}
    if new_password:
        payload["new_password"] = new_password
    done = run(f"python3 -c {shlex.quote(_SCRIPT)}", json.dumps(payload))
    if done.returncode != 0:
        raise AdminCallError(f"the admin service could not be asked: {done.stderr.strip()}")
    said: dict[str, Any] = json.loads(done.stdout)
    if "refused" in said:
        status, body = said["refused"]
        refused = AdminCallError(f"the admin service refused the login of {user}: {status} {body}")
        refused.status, refused.body = int(status), body
        raise refused
    answers: list[list[Any]] = said["answers"]
    return answers
