"""Bundles: the definition, the signed layout on media, building, verifying, media writers."""
