"""Bundles, the vendor's side: the definition, building and signing, media writers.

What the site runs on media (the layout, readers, the verifier) is :mod:`appliance.media`.
"""
