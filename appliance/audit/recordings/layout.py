"""The one place that defines a session recording on disk (ADR 0021): names, events, links.

A recording is one folder per SSH session::

    session.json          who and when (format, window, session, engineer, host, start),
                          written atomically before the first event; its sha256 starts
                          the chain, so chunks cannot be moved to another session's folder
    chunk-000001.jsonl    events, one JSON array a line: [t, channel, kind, data]
    chunk-000002.jsonl    ... a chunk is closed after a size or an age, then chained
    chain                 one line per closed chunk: "<n> <sha256(chunk)> <link_n>\\n"
    manifest.json         written at the end (the seal): every chunk, the last link,
                          signed with the audit log's key

Links: ``link_0 = sha256(b"appliance-session-recording/1\\n" || sha256(session.json))``,
``link_n = sha256(link_{n-1} || n as 8 bytes big-endian || sha256(chunk_n))`` over the
raw 32-byte digests. A recording cut short (the proxy killed, the disk full) verifies up
to its last chained chunk.

Events: ``t`` is seconds since the session started (monotonic clock, microseconds),
``channel`` the proxy's channel number or null for the session itself (forwarding).
Bytes (output, typed input) are stored as a JSON string when they are valid UTF-8, the
common case that stays readable with ``jq``, and otherwise as ``{"b64": "<base64>"}``, so
any bytes survive exactly; a character split between two writes makes both base64. Kinds
and their ``data``:

======== ==================================================================
open     {"type": shell|exec|sftp|scp|forward, "term", "width", "height"}
output   bytes the target sent on the channel
input    {"n": input number, "len": bytes typed}: written before they are forwarded
typed    {"n": input number, "data": bytes}: the input's text, once the target echoed
         it (see :mod:`appliance.breakglass.recording.echo`); never for an unechoed input
resize   {"width", "height"}
exec     {"command"}
exit     {"status"}
transfer {"op", ...}: one file operation of an SFTP or scp channel
         (:mod:`appliance.breakglass.shell.sftp`); paths are encoded as bytes are.
         Before the request goes to the target: open {"handle", "path", "flags"},
         write {"handle", "offset", "len"}, stat, lstat, realpath, readlink, statvfs,
         list, remove, rmdir {"path"}, mkdir, setstat, lsetstat {"path", "attrs"},
         fsetstat {"handle", "attrs"}, rename {"path", "to", "replace"?}, symlink and
         link {"path" (the new link), "to"}, close {"handle", "path", "upload"?,
         "download"?}: per direction that moved bytes, {"bytes", "sha256" (of the bytes
         in the order they moved), "in_order" (each piece where the last ended, from 0),
         "ranges" (offsets covered, [[start, end], ...])}. Before the answer goes to the
         vendor: read {"handle", "offset", "len"}, listed {"path", "names"}, error
         {"request", "code", "reason"} (the target refused)
forward  {"kind", "host", "port", "allowed"} (channel null)
close    null
======== ==================================================================

The manifest's signature is ECDSA P-384 with SHA-384 (hex DER) over :func:`canonical` of
the manifest without its ``signature`` field, as the audit log's records are hashed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "CHAIN",
    "CHUNK_RE",
    "FORMAT",
    "HEADER",
    "KINDS",
    "MANIFEST",
    "SIGNATURE_ALGORITHM",
    "canonical",
    "chain_line",
    "chunk_name",
    "decode_data",
    "encode_data",
    "first_link",
    "next_link",
    "parse_chain_line",
]

FORMAT = "appliance-session-recording/1"
#: How a manifest is signed: ECDSA (the audit key, P-384) over SHA-384 of its canonical form.
SIGNATURE_ALGORITHM = ec.ECDSA(hashes.SHA384())
HEADER = "session.json"
CHAIN = "chain"
MANIFEST = "manifest.json"
CHUNK_RE = re.compile(r"^chunk-(\d{6})\.jsonl$")
KINDS = frozenset(
    {"open", "output", "input", "typed", "resize", "exec", "exit", "transfer", "forward", "close"}
)
_CHAIN_LINE = re.compile(r"^(\d+) ([0-9a-f]{64}) ([0-9a-f]{64})$")


def chunk_name(n: int) -> str:
    """The file name of chunk ``n`` (from 1): names sort in chunk order."""
    return f"chunk-{n:06d}.jsonl"


def first_link(header: bytes) -> bytes:
    """link_0: the format and the session header's digest."""
    return hashlib.sha256(FORMAT.encode() + b"\n" + hashlib.sha256(header).digest()).digest()


def next_link(previous: bytes, n: int, chunk_sha256: bytes) -> bytes:
    """link_n from link_{n-1}, the chunk's number and its sha256 (raw digests)."""
    return hashlib.sha256(previous + n.to_bytes(8, "big") + chunk_sha256).digest()


def chain_line(n: int, chunk_sha256: bytes, link: bytes) -> bytes:
    """One line of the chain file."""
    return f"{n} {chunk_sha256.hex()} {link.hex()}\n".encode()


def parse_chain_line(line: str) -> tuple[int, str, str] | None:
    """(n, chunk sha256 hex, link hex) of a chain line; None when it is not one."""
    found = _CHAIN_LINE.match(line)
    if found is None:
        return None
    return int(found[1]), found[2], found[3]


def encode_data(data: bytes) -> str | dict[str, str]:
    """Bytes as a JSON value: the text when valid UTF-8, else {"b64": ...}."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def decode_data(value: Any) -> bytes:
    """The bytes :func:`encode_data` stored; ValueError for anything else."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("b64"), str) and len(value) == 1:
        return base64.b64decode(value["b64"], validate=True)
    raise ValueError(f"expected a string or {{'b64': ...}}, found {type(value).__name__}")


def canonical(value: dict[str, Any]) -> bytes:
    """The bytes a manifest's signature covers: key-sorted JSON, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
