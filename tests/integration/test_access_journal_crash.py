"""The gateway host's usage journal killed -9 mid-write: every count it acknowledged stays.

A writer process counts requests as the access proxy does (one commit per answered
request) and prints each count once it is committed; the test kills it with SIGKILL while
it writes, then opens the journal as a restarted proxy would.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from appliance.access.journal import UsageJournal

WRITER = """
import sys
from datetime import date
from pathlib import Path
from appliance.access.journal import UsageJournal
journal = UsageJournal(Path(sys.argv[1]))
for i in range(1, 1_000_000):
    journal.count("alice", "tiny", date(2026, 12, 6), requests=1,
                  prompt_tokens=3, completion_tokens=5)
    print(i, flush=True)
"""


def test_kill_9_loses_no_acknowledged_count(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    acknowledged = 0
    deadline = time.monotonic() + 60
    while acknowledged < 300 and time.monotonic() < deadline:
        acknowledged = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    # Lines already printed before the kill, still in the pipe: acknowledged too.
    acknowledged = max([acknowledged, *(int(line) for line in writer.stdout.read().split())])
    assert acknowledged >= 300
    journal = UsageJournal(path)
    (row,) = journal.rows()
    # At least every acknowledged count; at most the one being written when killed.
    assert acknowledged <= row.requests <= acknowledged + 1
    assert (row.prompt_tokens, row.completion_tokens) == (3 * row.requests, 5 * row.requests)
    assert list(journal.tokens_since(date(2026, 12, 1))) == [
        ("alice", date(2026, 12, 6), 8 * row.requests)
    ]
