"""Break-glass vendor access: time-boxed, two-person approved, ended on time.

One home for all of it, below the admin service (which only puts it on the web):

* ``service``: :class:`~appliance.breakglass.service.Breakglass`, the one object the API,
  the pages and the reaper call, built once with the site's policy, controller and clock;
* ``windows``: a window's state machine (request, decide, extend, end), no controller;
* ``provisioning``: the vendor's identities and policies on the controller, made at
  activation and deleted at the end, and the end confirmed when no circuit remains;
* ``deadlines``: which windows are over on either clock, and until when the gate is open;
* ``records``: the audit records of a window (one target, so its evidence is one export);
* ``errors``, ``policy`` (the settings break-glass is given), ``clock`` (a window's end
  on the kernel's boot-time clock as well as the wall clock);
* ``gate``: the nftables rule on the vendor access path; ``events``: the controller's
  event stream into the audit log; ``reaper``: the separate process that ends windows on
  time and keeps the gate in step;
* ``recording``: vendor shell sessions recorded, sealed with the audit key, verified
  offline and played back (ADR 0021).

The controller is reached through the Protocols of :mod:`appliance.ziti.interfaces`.
"""
