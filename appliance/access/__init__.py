"""Model access on the gateway host: keys, limits and usage around llm-gateway (ADR 0016).

The admin service decides (keys, grants, limits) and publishes a policy; the access proxy
here enforces it live, counts usage exactly and hands it back. Nothing in this package
imports the admin service: the two meet only in the policy and usage documents.
"""

from appliance.access.config import AccessConfig, AccessConfigError, load_config
from appliance.access.limiter import Limiter, Refusal, Ticket
from appliance.access.policy import Limits, Policy, PolicyError, key_digest, parse_policy

__all__ = [
    "AccessConfig",
    "AccessConfigError",
    "Limiter",
    "Limits",
    "Policy",
    "PolicyError",
    "Refusal",
    "Ticket",
    "key_digest",
    "load_config",
    "parse_policy",
]
