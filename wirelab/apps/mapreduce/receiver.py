"""A receiver that keeps serving whatever its peers send.

One thread multiplexes (``selectors``) the listening TCP socket, every open
connection and, for the manager, the UDP heartbeat socket on the same
address. A connection ends its message with its FIN; what it sent is then
decoded, checked against the protocol table for this receiver's role and, if
valid, handed to ``on_message``. Everything else is logged (event
``dropped``) and thrown away, in bounded time and memory:

* more than ``max_bytes`` on one connection: closed at once, the rest unread;
* no FIN within ``deadline_s`` of the accept (silent or trickling peers);
* more than ``max_connections`` open: the oldest is dropped;
* not UTF-8, not JSON, not an object, unknown or misdirected ``message_type``,
  missing or mistyped fields.

Because nothing blocks on one peer, a trickling client never delays a valid
one. ``on_message`` runs on this thread: it must only hand the message on.
"""

import logging
import selectors
import socket
import time

from wirelab.apps.mapreduce.protocol import TCP, UDP, check_message
from wirelab.apps.mapreduce.wire import MAX_MESSAGE_BYTES, decode

DEADLINE_S = 10.0
MAX_CONNECTIONS = 128
CHUNK = 64 * 1024
# How long select() waits at most, so that stop() and deadlines are noticed.
POLL_S = 0.1
LISTEN_BACKLOG = 128

log = logging.getLogger("mapreduce.receiver")


class _Conn:
    __slots__ = ("sock", "peer", "local", "buf", "deadline")

    def __init__(self, sock, peer, local, deadline):
        self.sock, self.peer, self.local, self.deadline = sock, peer, local, deadline
        self.buf = bytearray()


class Receiver:
    """Serve ``host``:``port`` (TCP, and UDP when ``udp``) for a ``role``."""

    def __init__(self, host, port, role, on_message, events, *, udp=False,
                 deadline_s=DEADLINE_S, max_bytes=MAX_MESSAGE_BYTES, max_connections=MAX_CONNECTIONS):
        self.host, self.port, self.role = host, port, role
        self.on_message, self.events = on_message, events
        self.want_udp = udp
        self.deadline_s, self.max_bytes, self.max_connections = deadline_s, max_bytes, max_connections
        self.tcp = self.udp = None
        self._sel = selectors.DefaultSelector()
        self._conns = {}
        self._stopping = False
        self.dropped = 0          # for tests and the final log line
        self.accepted = 0

    def bind(self):
        """Bind and listen (raises OSError: address in use, not local)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.tcp = socket.socket(family, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((self.host, self.port))
        self.tcp.listen(LISTEN_BACKLOG)
        self.tcp.setblocking(False)
        self._sel.register(self.tcp, selectors.EVENT_READ, "accept")
        if self.want_udp:
            self.udp = socket.socket(family, socket.SOCK_DGRAM)
            self.udp.bind(self.tcp.getsockname()[:2])
            self.udp.setblocking(False)
            self._sel.register(self.udp, selectors.EVENT_READ, "udp")
        return self.tcp.getsockname()[:2]

    @property
    def address(self):
        return self.tcp.getsockname()[:2]

    def stop(self):
        self._stopping = True

    def serve(self):
        """Run until :meth:`stop`; then close every socket."""
        try:
            while not self._stopping:
                now = time.monotonic()
                timeout = POLL_S
                if self._conns:
                    soonest = min(c.deadline for c in self._conns.values())
                    timeout = max(0.0, min(timeout, soonest - now))
                for key, _ in self._sel.select(timeout):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "udp":
                        self._datagrams()
                    else:
                        self._read(key.data)
                self._expire(time.monotonic())
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            for sock in (self.tcp, self.udp):
                if sock is not None:
                    self._sel.unregister(sock)
                    sock.close()
            self._sel.close()

    def _accept(self):
        for _ in range(LISTEN_BACKLOG):
            try:
                sock, peer = self.tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # e.g. EMFILE: leave the rest queued in the kernel
                log.warning("accept failed: %s", exc)
                return
            if len(self._conns) >= self.max_connections:
                oldest = min(self._conns.values(), key=lambda c: c.deadline)
                self._drop(oldest, f"more than {self.max_connections} connections open: oldest dropped")
            sock.setblocking(False)
            conn = _Conn(sock, peer, sock.getsockname(), time.monotonic() + self.deadline_s)
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn):
        try:
            data = conn.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:   # reset by the peer
            self._drop(conn, f"connection error before the end of the message: {exc.strerror or exc}")
            return
        if data:
            if len(conn.buf) + len(data) > self.max_bytes:
                conn.buf += data[:64]
                self._drop(conn, f"message longer than {self.max_bytes} bytes")
                return
            conn.buf += data
            return
        self._close(conn)
        self._deliver(bytes(conn.buf), TCP, conn.peer, conn.local)

    def _datagrams(self):
        for _ in range(256):
            try:
                data, peer = self.udp.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # ICMP errors reported on the socket
                log.debug("udp receive error: %s", exc)
                return
            if len(data) > self.max_bytes:
                self._count_drop(f"datagram longer than {self.max_bytes} bytes", peer, data, UDP)
                continue
            self._deliver(data, UDP, peer, self.udp.getsockname())

    def _expire(self, now):
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            what = "nothing" if not conn.buf else f"{len(conn.buf)} bytes without the end"
            self._drop(conn, f"{what} within {self.deadline_s:g} s")

    def _deliver(self, data, transport, peer, local):
        obj, reason = decode(data)
        if reason is None:
            errors, warnings = check_message(obj, transport=transport, receiver=self.role)
            if errors:
                reason = "; ".join(errors)
        if reason is not None:
            self._count_drop(reason, peer, data, transport)
            return
        for warning in warnings:
            log.warning("from %s: %s", peer, warning)
        self.accepted += 1
        self.events.message("recv", transport, peer, local, obj)
        try:
            self.on_message(obj, transport, peer)
        except Exception:   # a handler bug must not stop the server
            log.exception("handling %s from %s failed", obj.get("message_type"), peer)

    def _drop(self, conn, reason):
        self._close(conn)
        self._count_drop(reason, conn.peer, conn.buf, TCP)

    def _count_drop(self, reason, peer, data, transport):
        self.dropped += 1
        log.warning("dropped %s from %s: %s", transport, peer and f"{peer[0]}:{peer[1]}", reason)
        self.events.dropped(reason, peer, data, transport)

    def _close(self, conn):
        if self._conns.pop(conn.sock.fileno(), None) is not None:
            self._sel.unregister(conn.sock)
        conn.sock.close()
