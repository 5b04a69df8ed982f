"""What a window's scope may name: the services the installer lists for the site.

The request form and API offer these as choices (vendor shells first), so that an admin
picks a service the site really has instead of typing a name the controller may not
know; :func:`appliance.breakglass.windows.request_window` refuses any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.breakglass.policy import BreakglassPolicy
from appliance.breakglass.shell.logins import shell_hosts

__all__ = ["ScopeChoice", "scope_choices"]


@dataclass(frozen=True)
class ScopeChoice:
    """A service a window may name; ``shell_host`` is the host its vendor shell reaches
    (None for one of the overlay's own services)."""

    name: str
    shell_host: str | None


def scope_choices(policy: BreakglassPolicy) -> list[ScopeChoice] | None:
    """The services the site offers a window, vendor shells first; None where the site
    lists none (any name is taken, and checked against the controller at activation)."""
    if policy.services is None:
        return None
    choices = [ScopeChoice(s, next(iter(shell_hosts([s])), None)) for s in policy.services]
    return sorted(choices, key=lambda c: (c.shell_host is None, c.name))
