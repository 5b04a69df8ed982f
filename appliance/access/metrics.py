"""The access proxy's own counters, in Prometheus' text format (version 0.0.4).

Counted since the process started (Prometheus takes a restart's reset in its stride);
the journal, not these, is the record of usage. Labels are identity and model names and
limit names: never a key or any part of one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

__all__ = ["Meters"]


class Meters:
    """Requests, tokens and refusals by identity and model; what is in flight."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.tokens: Counter[tuple[str, str, str]] = Counter()
        self.refusals: Counter[tuple[str, str]] = Counter()
        #: Model requests sent again on a new connection after one broke unanswered.
        self.model_retries = 0
        #: Model requests ended because the model server went silent and its path broke.
        self.model_paths_lost = 0
        self._policy_at: float | None = None
        self._path_lost_at: float | None = None

    def policy_applied(self) -> None:
        """A policy came into force now."""
        self._policy_at = self._monotonic()

    def policy_age(self) -> float | None:
        """Seconds since the policy in force arrived, or None before any did."""
        return None if self._policy_at is None else round(self._monotonic() - self._policy_at, 3)

    def answered(self, identity: str, model: str, prompt: int, completion: int, ok: bool) -> None:
        """A request that reached the model ended."""
        self.requests[(identity, model, "ok" if ok else "error")] += 1
        self.tokens[(identity, model, "prompt")] += prompt
        self.tokens[(identity, model, "completion")] += completion

    def refused(self, identity: str, why: str) -> None:
        """A request refused before it reached the model (a limit, the key, the model)."""
        self.refusals[(identity, why)] += 1

    def model_retried(self) -> None:
        """A model request's connection broke before any answer; it goes on a new one."""
        self.model_retries += 1

    def model_path_lost(self) -> None:
        """A silent model request ended: the model server's health did not answer."""
        self.model_paths_lost += 1
        self._path_lost_at = self._monotonic()

    def model_path_health(self) -> dict[str, object]:
        """For the installer's status: how often the path to the model broke since the
        proxy started, and how long ago it last did (a partition leaves no other trace
        once the path is whole again)."""
        return {
            "model_paths_lost": self.model_paths_lost,
            "model_path_lost_seconds_ago": None
            if self._path_lost_at is None
            else round(self._monotonic() - self._path_lost_at, 1),
        }

    def render(self, in_flight: Iterable[tuple[str, int]]) -> bytes:
        """Every metric as Prometheus' text format."""
        lines: list[str] = []
        _family(
            lines,
            "appliance_access_requests_total",
            "counter",
            "Requests that reached a model, by identity, model and outcome.",
            [
                ((("identity", i), ("model", m), ("outcome", o)), n)
                for (i, m, o), n in sorted(self.requests.items())
            ],
        )
        _family(
            lines,
            "appliance_access_tokens_total",
            "counter",
            "Tokens the model counted, by identity, model and kind (prompt, completion).",
            [
                ((("identity", i), ("model", m), ("kind", k)), n)
                for (i, m, k), n in sorted(self.tokens.items())
            ],
        )
        _family(
            lines,
            "appliance_access_refusals_total",
            "counter",
            "Requests refused by the proxy, by identity and reason (a limit, key, model).",
            [((("identity", i), ("reason", r)), n) for (i, r), n in sorted(self.refusals.items())],
        )
        _family(
            lines,
            "appliance_access_in_flight",
            "gauge",
            "Requests admitted and not yet ended, by subject (@identity or #group).",
            [((("subject", s),), n) for s, n in sorted(in_flight) if n],
        )
        _family(
            lines,
            "appliance_access_model_retries_total",
            "counter",
            "Model requests sent again because their connection broke before any answer "
            "(a GPU host stopped or the overlay could not reach it).",
            [((), self.model_retries)],
        )
        _family(
            lines,
            "appliance_access_model_paths_lost_total",
            "counter",
            "Model requests ended with an error because the model server went silent and "
            "its health did not answer on the same path (a partition or a stopped GPU host).",
            [((), self.model_paths_lost)],
        )
        age = self.policy_age()
        _family(
            lines,
            "appliance_access_policy_age_seconds",
            "gauge",
            "Seconds since the policy in force arrived; -1 before any did.",
            [((), -1.0 if age is None else age)],
        )
        return ("\n".join(lines) + "\n").encode()


def _family(
    lines: list[str],
    name: str,
    kind: str,
    help_text: str,
    samples: Iterable[tuple[tuple[tuple[str, str], ...], float]],
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        lines.append(f"{name}{{{inner}}} {value}" if inner else f"{name} {value}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
