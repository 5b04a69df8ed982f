"""The recorded vendor shell (ADR 0021): one proxy of ours between a vendor engineer and
a target's sshd, with a site SSH CA that signs a certificate per session.

* ``ca``: the site SSH CA's key (made once, root only) and the per-session certificates;
* ``logins``: the engineers' shell secrets, minted at activation, checked at each login
  (no asyncssh: the admin service imports it);
* ``config``: the proxy's YAML configuration, one loopback port per opted-in host;
* ``relay``: one shell or command relayed, every event recorded before it is forwarded;
* ``proxy``: the SSH server towards the vendor and client towards the target, and the
  ends of sessions (recording failure, certificate expiry, window end);
* ``serve``: the proxy's process, built from the configuration.

Nothing is imported here, so that importing ``logins`` does not load asyncssh.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# asyncssh names DSA key types when it is imported, which cryptography warns about on every
# command; the vendor shell uses ECDSA P-384 only, so the warning says nothing to a user.
warnings.filterwarnings(
    "ignore", message="DSA is deprecated", category=CryptographyDeprecationWarning
)
