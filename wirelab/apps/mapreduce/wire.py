"""Framing: one JSON object per TCP connection, one per UDP datagram.

A sender connects, writes the object, shuts down its write side (the FIN is
the end of the message) and closes. :func:`decode` turns what a receiver read
into an object or a reason to drop it.
"""

import json
import socket

# Far above any real message (a map task lists its input files), low enough
# that a peer cannot make a receiver hold much memory.
MAX_MESSAGE_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 5.0


def encode(message):
    return json.dumps(message).encode("utf-8")


def decode(data):
    """``(object, None)`` or ``(None, reason)`` for the bytes of one message."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
    if not text.strip():
        return None, "empty message"
    try:
        obj = json.loads(text)
    except ValueError as exc:   # JSONDecodeError, or a number too long to convert
        return None, f"not JSON ({str(exc)[:80]})"
    except RecursionError:
        return None, "not JSON (nested too deeply)"
    return obj, None


def send_tcp(host, port, message, events=None, timeout=CONNECT_TIMEOUT_S):
    """Send ``message`` on a new connection to ``host``:``port``.

    Raises OSError (refused, unreachable, timed out). Logs a ``send`` event
    with the connection's real addresses once every byte is written."""
    data = encode(message)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(data)
        src, dst = sock.getsockname(), sock.getpeername()
        sock.shutdown(socket.SHUT_WR)
    if events is not None:
        events.message("send", "tcp", src, dst, message)


def send_udp(sock, host, port, message, events=None):
    """Send ``message`` as one datagram from ``sock`` (already bound or connected)."""
    sock.sendto(encode(message), (host, port))
    if events is not None:
        events.message("send", "udp", sock.getsockname(), (host, port), message)
