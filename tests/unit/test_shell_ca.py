"""The site SSH CA and the shell secrets (ADR 0021): certificates read back byte by byte,
keys made once and root only, secrets checked against the window."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest
from asyncssh.packet import SSHPacket

from appliance.breakglass.errors import ShellCaError
from appliance.breakglass.shell.ca import SiteSshCa, create_key, load_key
from appliance.breakglass.shell.logins import hash_secret, mint_shell_secrets, shell_hosts


def decode(cert: asyncssh.SSHCertificate) -> dict[str, object]:
    """The fields of an OpenSSH ECDSA user certificate, read with no help from asyncssh's
    certificate class (PROTOCOL.certkeys)."""
    packet = SSHPacket(cert.public_data)
    fields: dict[str, object] = {"type": packet.get_string()}
    packet.get_string()  # nonce
    packet.get_string()  # curve
    packet.get_string()  # public point
    fields["serial"] = packet.get_uint64()
    fields["cert_type"] = packet.get_uint32()
    fields["key_id"] = packet.get_string().decode()
    principals = SSHPacket(packet.get_string())
    fields["principals"] = []
    while principals:
        fields["principals"].append(principals.get_string().decode())  # type: ignore[attr-defined]
    fields["valid_after"] = packet.get_uint64()
    fields["valid_before"] = packet.get_uint64()
    options, extensions = SSHPacket(packet.get_string()), SSHPacket(packet.get_string())
    names = []
    while options:
        names.append(options.get_string().decode())
        options.get_string()
    fields["critical_options"] = names
    names = []
    while extensions:
        names.append(extensions.get_string().decode())
        extensions.get_string()
    fields["extensions"] = names
    return fields


@pytest.fixture
def ca(tmp_path: Path) -> SiteSshCa:
    folder = tmp_path / "ca"
    return SiteSshCa(create_key(folder / "ca.key"))


def test_a_certificate_is_for_appliance_vendor_with_a_pty_only(ca: SiteSshCa) -> None:
    now = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    ends = now + timedelta(minutes=30, microseconds=900_000)
    issued = ca.issue(
        window_id=7, engineer="eve", host="gw1", session_id="s1", window_ends=ends, now=now
    )
    fields = decode(issued.certificate)
    assert fields["type"] == b"ecdsa-sha2-nistp384-cert-v01@openssh.com"
    assert fields["cert_type"] == 1  # user
    assert fields["principals"] == ["appliance-vendor"]
    assert fields["key_id"] == "window=7 engineer=eve host=gw1 session=s1"
    assert fields["critical_options"] == []
    assert fields["extensions"] == ["permit-pty"]
    assert fields["valid_after"] == int(now.timestamp()) - 60
    # Never past the window's end, not even by its fraction of a second.
    assert fields["valid_before"] == int(ends.timestamp()) <= ends.timestamp()
    assert issued.certificate.signing_key.public_data == load_pub(ca)
    assert "PRIVATE" not in repr(issued)


def load_pub(ca: SiteSshCa) -> bytes:
    return asyncssh.import_public_key(ca.public_line()).public_data


def test_each_session_gets_a_key_of_its_own(ca: SiteSshCa) -> None:
    ends = datetime.now(UTC) + timedelta(minutes=5)
    one, two = (
        ca.issue(window_id=1, engineer="eve", host="gw1", session_id=s, window_ends=ends)
        for s in ("a", "b")
    )
    assert one.key.public_data != two.key.public_data
    assert one.serial != two.serial


def test_no_certificate_for_a_window_that_has_ended(ca: SiteSshCa) -> None:
    now = datetime.now(UTC)
    with pytest.raises(ShellCaError, match="no certificate is issued"):
        ca.issue(window_id=1, engineer="eve", host="gw1", session_id="a", window_ends=now, now=now)


def test_the_ca_key_is_made_once_root_only_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "ca" / "ca.key"
    create_key(path)
    first = path.read_bytes()
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    with pytest.raises(ShellCaError, match="never replaced"):
        create_key(path)
    assert path.read_bytes() == first
    assert load_key(path).get_algorithm() == "ecdsa-sha2-nistp384"
    assert SiteSshCa.load(path).public_line().startswith("ecdsa-sha2-nistp384 ")


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ca" / "ca.key"
    create_key(path)
    os.chmod(path, 0o640)
    with pytest.raises(ShellCaError, match="expected 0600"):
        load_key(path)
    os.chmod(path, 0o600)
    os.chmod(path.parent, 0o755)  # noqa: S103  # the attack under test
    with pytest.raises(ShellCaError, match="expected 0700"):
        load_key(path)
    with pytest.raises(ShellCaError, match="expected 0700"):
        create_key(path.parent / "other.key")
    assert not (path.parent / "other.key").exists()


def test_secrets_are_shown_once_and_stored_as_hashes() -> None:
    minted = mint_shell_secrets(["eve", "mallory"])
    assert set(minted.shown) == {"eve", "mallory"}
    assert minted.shown["eve"] != minted.shown["mallory"]
    assert minted.stored["eve"] == hash_secret(minted.shown["eve"])
    assert minted.shown["eve"] not in repr(minted)
    assert shell_hosts(["vendor-shell-gw1", "ssh-gw1", "vendor-shell-db1"]) == ["gw1", "db1"]
