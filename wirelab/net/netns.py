"""Netlink access inside a Mininet node's network namespace, in this process.

Mininet's namespaces are unnamed: they belong to the node's shell process. We
enter one with ``setns(2)`` on the calling thread just long enough to open a
socket (an IPRoute netlink socket, or an ioctl socket); the socket stays bound to
that namespace after we switch back. No helper process, no named namespace to
clean up, and cheap enough for topologies of hundreds of routers.
"""

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct
import threading

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl.rtmsg import rtmsg

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_lock = threading.Lock()


def _setns(fd):
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _pid_of(target):
    return target if isinstance(target, int) else target.pid


@contextlib.contextmanager
def entered(target):
    """Run the ``with`` body with this thread in ``target``'s network namespace.

    ``target``: a Mininet node (uses its shell's pid) or a pid. ``None``: stay.
    Only open sockets inside; do not start processes or threads here.
    """
    if target is None:
        yield
        return
    with _lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            there = os.open(f"/proc/{_pid_of(target)}/ns/net", os.O_RDONLY)
            try:
                _setns(there)
                try:
                    yield
                finally:
                    _setns(home)
            finally:
                os.close(there)
        finally:
            os.close(home)


def iproute(target):
    """An ``IPRoute`` netlink socket bound to ``target``'s network namespace.

    The caller closes it (use it as a context manager).
    """
    with entered(target):
        return IPRoute()


# ethtool ioctls (linux/ethtool.h): legacy per-feature get/set, which every
# kernel since 2.6 answers, struct ethtool_value { __u32 cmd; __u32 data; }.
_SIOCETHTOOL = 0x8946
_OFFLOADS = {
    # name: (get cmd, set cmd)
    "tso": (0x0000001E, 0x0000001F),
    "gso": (0x00000023, 0x00000024),
    "gro": (0x0000002B, 0x0000002C),
}


def _ethtool(sock, ifname, cmd, data=0):
    value = ctypes.create_string_buffer(struct.pack("II", cmd, data), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
    return struct.unpack("II", value.raw)[1]


def open_ioctl_socket(target):
    """A datagram socket in ``target``'s namespace, for interface ioctls."""
    with entered(target):
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def set_offloads(sock, ifname, enabled=False):
    """Turn TSO, GSO and GRO on or off on ``ifname`` (in ``sock``'s namespace).

    With them on, a router sees 64 KB super-packets: per-packet impairment and
    captures are wrong. Returns the state read back after the change.
    """
    state = {}
    for name, (get_cmd, set_cmd) in _OFFLOADS.items():
        try:
            _ethtool(sock, ifname, set_cmd, 1 if enabled else 0)
        except OSError as exc:
            # EOPNOTSUPP: the device cannot do it at all, which is what we want.
            if exc.errno not in (95,):
                raise
        try:
            state[name] = bool(_ethtool(sock, ifname, get_cmd))
        except OSError:
            state[name] = False
    return state


def get_offloads(sock, ifname):
    state = {}
    for name, (get_cmd, _) in _OFFLOADS.items():
        try:
            state[name] = bool(_ethtool(sock, ifname, get_cmd))
        except OSError:
            state[name] = False
    return state


@contextlib.contextmanager
def node_sockets(target):
    """(IPRoute, ioctl socket, raw rtnetlink socket) in ``target``'s namespace,
    all opened in one setns round trip; closed when the ``with`` ends."""
    with contextlib.ExitStack() as stack:
        with entered(target):
            ipr = stack.enter_context(IPRoute())
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            rtnl = stack.enter_context(
                socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))
        rtnl.bind((0, 0))
        yield ipr, sock, rtnl


# What IPRoute.route("add", ...) sends (pyroute2 0.7): RTM_NEWROUTE with
# NLM_F_REQUEST|ACK|EXCL|CREATE, main table, proto static, scope universe,
# unicast; RTA_DST only for a non-default prefix. tests/unit/test_route_batch.py
# compares the bytes with IPRoute's own.
_RTM_NEWROUTE = 24
_NLMSG_ERROR = 2
_ROUTE_ADD_FLAGS = 0x605
_RT_TABLE_MAIN, _RTPROT_STATIC, _RTN_UNICAST = 254, 4, 1
#: Messages per sendmsg: their acks (36 bytes each) fit any receive buffer.
ROUTE_BATCH = 256


def encode_route_add(spec, seq=0):
    """The RTM_NEWROUTE bytes for one route spec: {dst, dst_len, family?,
    gateway?, oif?} (as :func:`wirelab.net.nodes._route_spec` gives, ``dev``
    resolved to ``oif``)."""
    msg = rtmsg()
    msg["header"]["type"] = _RTM_NEWROUTE
    msg["header"]["flags"] = _ROUTE_ADD_FLAGS
    msg["header"]["sequence_number"] = seq
    msg["family"] = spec.get("family", socket.AF_INET)
    msg["dst_len"] = spec["dst_len"]
    msg["table"] = _RT_TABLE_MAIN
    msg["proto"] = _RTPROT_STATIC
    msg["type"] = _RTN_UNICAST
    attrs = []
    if spec["dst_len"]:
        attrs.append(("RTA_DST", spec["dst"]))
    if spec.get("gateway"):
        attrs.append(("RTA_GATEWAY", spec["gateway"]))
    if spec.get("oif") is not None:
        attrs.append(("RTA_OIF", spec["oif"]))
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def add_routes(rtnl, specs):
    """Add ``specs`` (see :func:`encode_route_add`) through the raw rtnetlink
    socket ``rtnl``, :data:`ROUTE_BATCH` requests per sendmsg instead of one
    request and one reply at a time.

    Every request is acknowledged; returns ``[(spec, errno), ...]`` for those
    the kernel refused, in order (the kernel goes on with the rest of a batch
    after a refusal)."""
    failed = []
    for start in range(0, len(specs), ROUTE_BATCH):
        chunk = specs[start:start + ROUTE_BATCH]
        rtnl.sendto(b"".join(encode_route_add(spec, seq=start + i + 1)
                             for i, spec in enumerate(chunk)), (0, 0))
        pending = {start + i + 1 for i in range(len(chunk))}
        while pending:
            data = rtnl.recv(1 << 16)
            offset = 0
            while offset + 20 <= len(data):
                # struct nlmsghdr (length, type, flags, seq, pid) + nlmsgerr.error
                length, kind, _flags, seq, _pid, error = struct.unpack_from("=IHHIIi", data, offset)
                if kind == _NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    if error:
                        failed.append((specs[seq - 1], -error))
                offset += (length + 3) & ~3
                if length == 0:
                    break
    return failed
