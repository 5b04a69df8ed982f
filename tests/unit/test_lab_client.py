"""What `appliance lab client` prints a newcomer: commands that can be pasted as they are."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

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
