"""What `appliance lab client` prints a newcomer: commands that can be pasted as they are;
how it makes a client (no installer run: issue 24) and waits for its key to arrive."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from appliance.errors import LabError
from appliance.lab import client as lab_client
from appliance.lab.admin_api import AdminCallError, Runner, admin_calls
from appliance.lab.client import GATEWAY_PORT, LabClient, chat


def _client(tmp_path: Path) -> LabClient:
    folder = tmp_path / "a folder with spaces"
    return LabClient(
        "demo-client",
        folder / "demo-client.json",
        folder / "demo-client.key",
        tmp_path / "bin" / "ziti",
    )


def test_the_tunnel_command_names_the_gateway_service_and_the_identity(tmp_path: Path) -> None:
    client = _client(tmp_path)
    argv = shlex.split(client.tunnel_command())
    assert argv == [
        str(tmp_path / "bin" / "ziti"),
        "tunnel",
        "proxy",
        f"llm-gateway:{GATEWAY_PORT}",
        "-i",
        str(client.identity),
    ]


def test_the_chat_request_reads_the_key_from_its_file_and_asks_for_the_model(
    tmp_path: Path,
) -> None:
    argv = shlex.split(_client(tmp_path).chat_command())
    assert argv[:3] == ["curl", "-s", f"http://127.0.0.1:{GATEWAY_PORT}/v1/chat/completions"]
    assert f"Authorization: Bearer $(cat {shlex.quote(str(_client(tmp_path).key_file))})" in argv
    body = json.loads(argv[argv.index("-d") + 1])
    assert body["model"] == "tiny" and body["messages"][0]["role"] == "user"


def _runner(said: dict[str, object], seen: list[dict[str, object]]) -> Runner:
    def run(command: str, stdin: str) -> subprocess.CompletedProcess[str]:
        assert command.startswith("python3 -c ")
        seen.append(json.loads(stdin))
        return subprocess.CompletedProcess(command, 0, json.dumps(said), "")

    return run


def test_admin_calls_send_the_password_on_stdin_and_name_a_refused_login() -> None:
    seen: list[dict[str, object]] = []
    calls: list[tuple[str, str, object]] = [("GET", "/identities", None)]
    answers = admin_calls(
        _runner({"answers": [[200, []]]}, seen), "admin", "otp-1", calls, new_password="n"
    )
    assert answers == [[200, []]]
    assert seen == [
        {"user": "admin", "password": "otp-1", "new_password": "n", "calls": [list(calls[0])]}
    ]
    refused = _runner({"refused": [401, "wrong username or password"]}, seen)
    with pytest.raises(AdminCallError, match="refused the login of admin: .*401") as err:
        admin_calls(refused, "admin", "wrong", calls)
    assert (err.value.status, err.value.body) == (401, "wrong username or password")


def test_without_a_supplied_ziti_the_site_routers_image_lends_its_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPLIANCE_SUPPLIED", str(tmp_path / "nothing-supplied"))
    copied: list[tuple[str, str, Path]] = []
    monkeypatch.setattr(lab_client.podman, "image_exists", lambda ref: ref.endswith(":2.1.0"))
    monkeypatch.setattr(lab_client.podman, "create_container", lambda ref: f"c-{ref}")
    monkeypatch.setattr(
        lab_client.podman,
        "copy_from_container",
        lambda container, path, dest: copied.append((container, path, dest)),
    )
    monkeypatch.setattr(lab_client.podman, "remove_container", lambda container: None)
    said: list[str] = []
    found = lab_client.ziti_program({"ziti-router": "2.1.0"}, tmp_path / "bin", said.append)
    assert found == tmp_path / "bin" / "ziti"
    assert copied == [("c-localhost/appliance/ziti-router:2.1.0", "/usr/local/bin/ziti", found)]
    assert "ziti-router:2.1.0" in said[0]
    # Another version than the site runs is not taken: no program, and the caller says so.
    assert lab_client.ziti_program({"ziti-router": "2.2.0"}, tmp_path / "b2", said.append) is None


class _Gateway:
    """Answers of the gateway through the tunnel, in order, and a clock that sleeping moves."""

    def __init__(self, answers: list[int | str]) -> None:
        self.answers = answers
        self.now = 0.0
        self.asked = 0

    def urlopen(self, request: Any, timeout: float) -> io.BytesIO:
        self.asked += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer == "down":
            raise ConnectionRefusedError("connection refused")
        if isinstance(answer, int):
            body = io.BytesIO(b'{"error": {"message": "invalid API key"}}')
            raise urllib.error.HTTPError(request.full_url, answer, "no", {}, body)  # type: ignore[arg-type]
        return io.BytesIO(answer.encode())

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _keyed(tmp_path: Path) -> LabClient:
    client = _client(tmp_path)
    client.key_file.parent.mkdir(parents=True)
    client.key_file.write_text("sk-site-abc\n")
    return client


def _chat(gateway: _Gateway, client: LabClient, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(urllib.request, "urlopen", gateway.urlopen)
    return chat(client, GATEWAY_PORT, sleep=gateway.sleep, clock=lambda: gateway.now)


def test_a_new_key_refused_for_a_few_seconds_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 24: the access proxy learns a new key at its next policy poll, within seconds.
    gateway = _Gateway(["down", 401, 401, 401, '{"model": "tiny"}'])
    assert _chat(gateway, _keyed(tmp_path), monkeypatch) == '{"model": "tiny"}'
    assert gateway.asked == 5


def test_a_key_still_refused_after_15_s_is_an_error_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = _Gateway([401])
    with pytest.raises(LabError, match=r"refused the client's key \(HTTP 401\) for 15 s") as err:
        _chat(gateway, _keyed(tmp_path), monkeypatch)
    assert "invalid API key" in str(err.value)
    assert "appliance-access" in (err.value.hint or "")
    assert 15 <= gateway.now <= 16


def test_another_http_error_is_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = _Gateway([403])
    with pytest.raises(LabError, match="HTTP 403"):
        _chat(gateway, _keyed(tmp_path), monkeypatch)
    assert gateway.asked == 1


def test_a_client_is_made_granted_and_keyed_through_the_admin_service_without_a_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[tuple[str, str, object]]] = []
    answers = [
        [[200, []]],
        [[201, {"identity": {"id": 7, "name": "demo-client"}, "jwt": "a.jwt"}], [201, {"id": 3}]],
        [[201, {"id": 9, "prefix": "sk-site-abcdefgh", "api_key": "sk-site-secret"}]],
    ]

    def calls_made(self: object, password: str, made: list[tuple[str, str, object]]) -> object:
        calls.append(made)
        return answers.pop(0)

    machine = SimpleNamespace(group="controller", site_address="10.0.0.2")
    lab = SimpleNamespace(name="default", layout=SimpleNamespace(ssh=None))
    monkeypatch.setattr(lab_client, "locate", lambda name, state: lab)
    monkeypatch.setattr(
        lab_client,
        "read_own_record",
        lambda found: SimpleNamespace(plan=SimpleNamespace(machines=[machine])),
    )
    monkeypatch.setattr(
        lab_client._AdminHost, "installed_components", lambda self: {"ziti-controller": "2"}
    )
    monkeypatch.setattr(lab_client._AdminHost, "controller_ca_digest", lambda self: "ca1")
    monkeypatch.setattr(lab_client._AdminHost, "calls", calls_made)
    monkeypatch.setattr(lab_client, "_admin_password", lambda host, saved, say: "pw")
    monkeypatch.setattr(lab_client, "ziti_program", lambda installed, scratch, say: Path("ziti"))

    def enroll(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        Path(argv[argv.index("-o") + 1]).write_text("{}")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(lab_client.subprocess, "run", enroll)
    out = tmp_path / "client"
    made = lab_client.make_client("demo-client", out, say=lambda line: None)
    assert calls == [
        [("GET", "/identities", None)],
        [
            ("POST", "/identities", {"name": "demo-client", "kind": "user"}),
            ("POST", "/grants", {"subject": "@demo-client", "model_service": "tiny"}),
        ],
        [("POST", "/identities/7/keys", {})],
    ]
    assert made.key_file.read_text() == "sk-site-secret"
    assert made.key_file.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.iterdir()) == [
        "demo-client.json",
        "demo-client.key",
        "demo-client.site",
    ]
