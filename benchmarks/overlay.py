"""The admin service against a live OpenZiti overlay: create-identity latency and how fast a
decision cuts an open connection.

Needs the supplied `ziti` (docs/components.md): ``python benchmarks/overlay.py [--tries 20]``.
A quickstart controller and router run on loopback; each try enrolls a fresh identity with
`ziti edge enroll`, opens a TCP connection to a hosted echo service through `ziti tunnel
proxy` (a round trip every 20 ms), then makes the decision through the admin API and
times decision -> connection dead:

* disable the identity (``POST /identities/{id}/disable``);
* remove its grant (``DELETE /grants/{id}``): upstream's known gap (openziti/ziti#4330) is
  that a tunneler may keep circuits already open when dial access goes; measured, not
  assumed;
* revoke a break-glass window (``POST /breakglass/windows/{id}/revoke``).

Create-identity latency is one ``POST /identities`` (controller create + enrollment token
+ our row and audit record), measured N times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latency import percentiles  # noqa: E402  (benchmarks/latency.py, beside this script)

from appliance.components.supplied import find_in_folder  # noqa: E402
from appliance.settings import supplied_dir  # noqa: E402
from tests.integration.overlay import (  # noqa: E402
    POLL,
    Site,
    echo_connection,
    enroll,
    overlay_site,
    seconds_until_dead,
    tunneler,
)
from tests.integration.support import free_port  # noqa: E402

#: A connection not cut after this long counts as "not cut".
CUT_TIMEOUT_S = 15.0


def create_latency(site: Site, tries: int) -> list[float]:
    """Seconds for POST /identities, each a new identity (deleted again afterwards)."""
    seconds = []
    for n in range(tries):
        start = time.perf_counter()
        made = site.post("/identities", {"name": f"bench-create-{n}", "kind": "device"})
        seconds.append(time.perf_counter() - start)
        assert made.status_code == 201, made.text
        assert site.delete(f"/identities/{made.json()['identity']['id']}").status_code == 204
    return seconds


def granted(site: Site, name: str) -> tuple[int, str, int]:
    """A new identity granted the echo service: its row id, one-time JWT and grant id."""
    row, jwt = site.create(name)
    grant = site.post("/grants", {"subject": f"@{name}", "model_service": "echo"})
    assert grant.status_code == 201, grant.text
    return row, jwt, int(grant.json()["id"])


def disable_try(site: Site, n: int) -> float | None:
    row, jwt, _ = granted(site, f"bench-disable-{n}")

    def decide() -> None:
        assert site.post(f"/identities/{row}/disable").status_code == 200

    return _timed(site, f"bench-disable-{n}", jwt, decide)


def grant_try(site: Site, n: int) -> float | None:
    _, jwt, grant = granted(site, f"bench-grant-{n}")

    def decide() -> None:
        assert site.delete(f"/grants/{grant}").status_code == 204

    return _timed(site, f"bench-grant-{n}", jwt, decide)


def revoke_try(site: Site, n: int) -> float | None:
    site.login("alice")
    made = site.post(
        "/breakglass/windows",
        {
            "reason": "benchmark",
            "ticket": f"BENCH-{n}",
            "scope": ["echo"],
            "engineers": [f"e{n}"],
            "duration_minutes": 30,
        },
    )
    assert made.status_code == 201, made.text
    wid = made.json()["id"]
    site.login("bob")
    approved = site.post(f"/breakglass/windows/{wid}/approve", {"note": "bench"})
    assert approved.status_code == 200, approved.text
    jwt = approved.json()["handovers"][0]["jwt"]

    def decide() -> None:
        revoked = site.post(f"/breakglass/windows/{wid}/revoke", {"reason": "bench"})
        assert revoked.status_code == 200, revoked.text

    try:
        return _timed(site, f"bench-revoke-{n}", jwt, decide)
    finally:
        site.login("alice")


def _timed(site: Site, name: str, jwt: str, decide: Callable[[], None]) -> float | None:
    """Decision (the API call's start) to a dead connection, in seconds."""
    identity = enroll(site.ziti, jwt, site.work / f"{name}.json")
    port = free_port()
    with tunneler(
        site.ziti, site.work / f"{name}.log", "proxy", f"echo:{port}", *POLL, "-i", str(identity)
    ):
        conn = echo_connection(port)
        with conn:
            start = time.perf_counter()
            decide()
            dead = seconds_until_dead(conn, timeout=CUT_TIMEOUT_S)
            if dead is None:
                return None
            return time.perf_counter() - start


def report(label: str, samples: list[float | None]) -> None:
    """One line: percentiles over the cut connections, and how many were never cut."""
    cut = [s for s in samples if s is not None]
    missed = len(samples) - len(cut)
    tail = f"; {missed} of {len(samples)} not cut within {CUT_TIMEOUT_S:.0f} s" if missed else ""
    print(f"{label:<34} {percentiles(cut)}{tail}", flush=True)


def main() -> None:
    """Run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args()
    if find_in_folder(supplied_dir(), "ziti") is None:
        sys.exit(f"no supplied `ziti` in {supplied_dir()} (docs/components.md): nothing to measure")
    with (
        tempfile.TemporaryDirectory(prefix="bench-overlay-") as tmp,
        overlay_site(Path(tmp)) as site,
    ):
        version = site.ctrl.api("GET", "/version")["data"]["version"]
        print(f"controller {version} (supplied ziti), {args.tries} tries each", flush=True)
        created = create_latency(site, args.tries)
        print(f"{'create identity (POST /identities)':<34} {percentiles(created)}", flush=True)
        for label, one in (
            ("disable identity -> conn dead", disable_try),
            ("remove grant -> conn dead", grant_try),
            ("break-glass revoke -> conn dead", revoke_try),
        ):
            report(label, [one(site, n) for n in range(args.tries)])


if __name__ == "__main__":
    main()
