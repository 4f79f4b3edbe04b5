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
