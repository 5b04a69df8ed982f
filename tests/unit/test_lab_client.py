"""What `appliance lab client` prints a newcomer: commands that can be pasted as they are."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from appliance.lab.admin_api import AdminCallError, Runner, admin_calls
from appliance.lab.client import GATEWAY_PORT, LabClient, mark_delivered


def _client(tmp_path: Path) -> LabClient:
    folder = tmp_path / "a folder with spaces"
    return LabClient(
        "demo-client",
        folder / "demo-client.json",
        folder / "demo-client.key",
        tmp_path / "bin" / "ziti",
        pending=True,
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


def test_delivery_clears_the_pending_mark(tmp_path: Path) -> None:
    client = _client(tmp_path)
    client.identity.parent.mkdir(parents=True)
    pending = client.identity.with_name("demo-client.pending")
    pending.write_text("not yet\n")
    delivered = mark_delivered(client)
    assert not delivered.pending and not pending.exists()


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
    with pytest.raises(AdminCallError, match="refused the login of admin: .*401"):
        admin_calls(refused, "admin", "wrong", calls)


def test_without_a_supplied_ziti_the_site_routers_image_lends_its_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.lab import client as lab_client

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
