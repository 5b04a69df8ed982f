"""Bundles, the vendor's side: building and signing, media writers, inspection, audit.

The definition a bundle is built from is :mod:`appliance.definition`, its SBOMs'
form :mod:`appliance.sbom`; what the site runs on media (the layout, readers, the
verifier) is :mod:`appliance.media`.
"""
