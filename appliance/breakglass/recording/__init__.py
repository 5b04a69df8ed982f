"""Recording what a vendor engineer does in a break-glass window (ADR 0021).

* ``interface``: what the vendor shell proxy calls (:class:`SessionRecording`), and
  :class:`RecordingError`, on which it ends the session;
* the layout on disk and the offline verifier are :mod:`appliance.audit.recordings`;
* ``recorder``: :func:`start_recording`, the recorder that streams events into chained
  chunks and fails closed; ``echo``: which typed input is kept as text;
* ``seal``: the manifest signed with the audit log's key; ``evidence``: its digest as an
  audit record of the window;
* ``recover``: a recording cut short (recorder killed), sealed at the proxy's next start;
* ``asciicast`` and ``playback``: a shell channel as asciicast v2, replayed in a terminal.
"""
