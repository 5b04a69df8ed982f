"""Vendor session recordings as evidence, checked offline (ADR 0021).

They live beside the audit log's verifier because an auditor checks both with the same
key and no network: a window's evidence export carries its recordings, and
``appliance audit verify`` checks each against the audit record that names it. The
recorder that writes them is :mod:`appliance.breakglass.recording`; this package is only
what a verifier needs, and imports nothing of break-glass.

* ``layout``: the one definition of a recording on disk (files, events, chain links,
  how the manifest is signed);
* ``verify``: one recording's folder, naming the chunk and line (``errors``: why not);
* ``carried``: the recordings a window's evidence export carries, against their records.
"""
