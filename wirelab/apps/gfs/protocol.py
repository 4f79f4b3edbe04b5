"""The heartbeat message and the event log, shared by chunkserver and main server.

A heartbeat is one JSON object::

    {"message_type": "heartbeat", "chunkserver": "w1", "seq": 17, "sent_at": 1718000000.123}

over UDP one per datagram, over TCP one per line (``\\n``-terminated).
:func:`parse` accepts exactly that (extra keys are ignored, for later
versions) and names what is wrong with anything else, so the receiver can
log it as dropped and go on.

The event log is JSON lines, flushed line by line, the house format that
:mod:`wirelab.observe.messages` reads back and matches against captures::

    {"t": 1718000000.2, "event": "send", "transport": "udp", "src": [ip, port], "dst": [ip, port], "message": {...}}
    {"t": ..., "event": "recv", ...same fields...}
    {"t": ..., "event": "dropped", "transport": "udp", "src": ..., "dst": ..., "reason": "...", "bytes": n}
    {"t": ..., "event": "state", "chunkserver": "w1", "detector": "fixed_k", "state": "dead", "phi": 8.4, ...}

``t`` is wall-clock time (``time.time()``, seconds): every namespace of the
testbed shares the clock, and tcpdump's timestamps are on it too.
"""

import json
import math

HEARTBEAT = "heartbeat"
# One unfragmented datagram on Ethernet: 1500 - 20 (IPv4) - 8 (UDP). A heartbeat
# takes ~110 bytes; anything larger is not one of ours.
MAX_MESSAGE_BYTES = 1472
# Chunkserver names are host names: bounded, so a flood of junk names cannot
# grow the server's tables without limit (see main_server.MAX_CHUNKSERVERS).
MAX_NAME_CHARS = 64
# Sequence numbers fit a signed 64-bit integer: a JSON number can be larger.
MAX_SEQ = 2**63 - 1
FIELDS = ("message_type", "chunkserver", "seq", "sent_at")


def heartbeat(name, seq, sent_at):
    return {"message_type": HEARTBEAT, "chunkserver": name, "seq": seq, "sent_at": sent_at}


def encode(message):
    """The message's bytes: compact JSON, keys in the order they were given."""
    return json.dumps(message, separators=(",", ":")).encode()


def parse(data):
    """``(message, None)`` for a valid heartbeat, else ``(None, reason)``.

    ``data``: the bytes of one datagram or one line (without the newline)."""
    if len(data) > MAX_MESSAGE_BYTES:
        return None, f"oversize: {len(data)} bytes > {MAX_MESSAGE_BYTES}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    try:
        message = json.loads(text)
    except RecursionError:   # "[[[[..." nested deeper than the parser's stack
        return None, "malformed JSON: nested too deep"
    except ValueError as exc:
        return None, f"malformed JSON: {exc}"
    if not isinstance(message, dict):
        return None, f"not a JSON object: {type(message).__name__}"
    kind = message.get("message_type")
    if kind != HEARTBEAT:
        return None, f"unknown message_type: {str(kind)[:40]!r}" if "message_type" in message \
            else "missing field message_type"
    for field in FIELDS[1:]:
        if field not in message:
            return None, f"missing field {field}"
    name, seq, sent_at = message["chunkserver"], message["seq"], message["sent_at"]
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        return None, f"bad field chunkserver: a name of 1..{MAX_NAME_CHARS} characters"
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        return None, "bad field seq: an integer 0..2^63-1"
    if isinstance(sent_at, bool) or not isinstance(sent_at, (int, float)) or not math.isfinite(sent_at):
        return None, "bad field sent_at: a finite number of seconds"
    return message, None


class EventLog:
    """Append JSON lines to ``path``, each flushed at once (a crash loses nothing
    written before it; a reader can follow the file while it grows)."""

    def __init__(self, path):
        self.path = path
        self.file = open(path, "a", buffering=1) if path else None

    def write(self, t, event, **fields):
        if self.file is not None:
            self.file.write(json.dumps({"t": t, "event": event, **fields}, separators=(",", ":")) + "\n")

    def message(self, t, event, transport, src, dst, message):
        """A ``send`` or ``recv`` of ``message`` between ``[ip, port]`` ends."""
        self.write(t, event, transport=transport, src=list(src), dst=list(dst), message=message)

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def read_log(path):
    """The events of a log written by :class:`EventLog`; a torn last line
    (the writer was killed mid-line) is left out."""
    events = []
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                events.append(json.loads(line))
    return events
