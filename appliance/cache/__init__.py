"""The build cache: the ledger of what current work uses.

Every producer of cache entries (component builds, the bundle builder, the lab) records
into it, so it sits below them; pruning the rest (:mod:`appliance.prune`) sits above.
"""
