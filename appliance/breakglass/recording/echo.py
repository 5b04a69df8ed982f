"""Which typed bytes the target echoed: their text is recorded, the rest only their length.

The proxy cannot read the target's terminal settings, so it cannot tell a command from a
password typed with echo off (ADR 0021). It can see what comes back. The rule, per channel:

* Inputs wait in the order they were typed.
* Each output is compared, byte for byte, with the oldest waiting input, starting where
  the previous echo ended. While the output's bytes are exactly that input's next bytes,
  they are its echo; an input may come back over several outputs.
* When the output's bytes differ from the input's next bytes, that input was not echoed:
  it leaves the queue for good and stays length-only. The next waiting input is compared
  at the same place in the output.
* An input becomes text only when every one of its bytes came back. Output with no input
  waiting is only output.
* At most ``max_pending`` bytes wait; older inputs beyond that stay length-only, as do
  inputs still waiting when the channel closes.

So ``ls\\r`` typed and echoed as ``ls\\r\\n`` is kept (a terminal echoes CR as CR LF: the
CR matches, the LF is output), a password at ``sudo``'s prompt is not (the first output
after it is sudo's ``\\r\\n``), and a line edited with escape sequences or highlighted by
the shell stays length-only: the rule errs towards not recording. A byte that the target
prints by coincidence while a password keystroke waits is taken for its echo: the recording
then shows that one keystroke. Pure logic, no I/O; the recorder writes the events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_PENDING", "EchoMatcher"]

DEFAULT_MAX_PENDING = 4096


@dataclass
class _Waiting:
    number: int
    data: bytes
    matched: int = 0


class EchoMatcher:
    """One channel's typed inputs waiting for their echo."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._waiting: deque[_Waiting] = deque()
        self._pending = 0
        self._max_pending = max_pending

    def typed(self, number: int, data: bytes) -> None:
        """Input ``number`` was typed (sent towards the target)."""
        if not data:
            return
        self._waiting.append(_Waiting(number, data))
        self._pending += len(data)
        while self._pending > self._max_pending and self._waiting:
            self._drop()

    def output(self, data: bytes) -> list[tuple[int, bytes]]:
        """The inputs that ``data`` completes the echo of: (number, their bytes), in order."""
        echoed: list[tuple[int, bytes]] = []
        pos = 0
        while self._waiting and pos < len(data):
            head = self._waiting[0]
            want = len(head.data) - head.matched
            take = min(want, len(data) - pos)
            if data[pos : pos + take] != head.data[head.matched : head.matched + take]:
                self._drop()  # not echoed: length-only for good
                continue
            head.matched += take
            pos += take
            if head.matched == len(head.data):
                self._waiting.popleft()
                self._pending -= len(head.data)
                echoed.append((head.number, head.data))
        return echoed

    def waiting(self) -> list[int]:
        """Numbers of the inputs still waiting for their echo."""
        return [item.number for item in self._waiting]

    def _drop(self) -> None:
        item = self._waiting.popleft()
        self._pending -= len(item.data)
