"""The site's side of a bundle on media: its layout, reading it in place, and verifying it.

This package is what a site trusts to decide that media came from the vendor, unaltered,
complete and newer than what it runs, before anything touches a host. It stands alone:
it imports nothing of the build machine's code (definitions, components, the bundle
builder and media writers, the build cache, the lab), so it can be read in one sitting.

- :mod:`~appliance.media.layout`: the one place that names every file on media, and the
  verifier's hard limits (the build side writes by it);
- :mod:`~appliance.media.reader`: what the verifier reads through (``MediaReader``), and
  a plain directory;
- :mod:`~appliance.media.iso` and :mod:`~appliance.media.volumes`: an ISO image and split
  volumes, read without extracting;
- :mod:`~appliance.media.opener`: the reader for what a person named;
- :mod:`~appliance.media.verify`: the trust decision (TUF, then every byte of content);
- :mod:`~appliance.media.hashing`: streaming every byte against its signed length and sha256;
- :mod:`~appliance.media.delta`: what delta media leave to the site's store, found there;
- :mod:`~appliance.media.site_state`: the site's trust anchor and what it runs;
- :mod:`~appliance.media.site_export`: the form of the state a site sends its vendor.

Writers of media (a copy, an ISO image, volumes) are the vendor's: ``appliance.bundle``.
"""
