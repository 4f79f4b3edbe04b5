"""GFS-style heartbeats: chunkservers tell the main server they are alive.

As in the Google File System (Ghemawat et al., SOSP 2003, sec. 2.6.3 and 4.6:
the master "periodically communicates with each chunkserver in HeartBeat
messages" and re-replicates a chunkserver's chunks once it is considered
dead), here over UDP, one JSON object per datagram:

* :mod:`wirelab.apps.gfs.chunkserver` sends ``{"message_type": "heartbeat",
  "chunkserver": NAME, "seq": n, "sent_at": t}`` every interval, on a fixed
  timeline (over TCP too, one JSON line per message, to compare);
* :mod:`wirelab.apps.gfs.main_server` receives them, drops and logs anything
  malformed, measures loss, duplication and reordering from the sequence
  numbers, and runs two failure detectors side by side
  (:mod:`wirelab.apps.detectors`);
* :mod:`wirelab.apps.gfs.protocol` is the message format and the event log
  both write (JSON lines: ``send``, ``recv``, ``state``, ``dropped``);
* :mod:`wirelab.apps.gfs.sequence` counts loss, duplicates and reordering
  from sequence numbers (pure functions; verify uses them too).
"""
