"""Link MTUs and the path MTU a host has learnt, through netlink.

:class:`LinkMtu` changes the MTU of both ends of one link (a smaller MTU on a
middle link is what makes routers fragment, or answer "fragmentation needed"),
reads it back, and restores the old values on :meth:`~LinkMtu.remove` -- at the
end of a ``with`` block, and at the Testbed's teardown at the latest (also on
an exception or a signal), like the Testbed's other handles.

:func:`route_mtu` is what ``ip route get`` shows as ``mtu``: the kernel's
cached path MTU for a destination (a PMTU exception learnt from an ICMP
"fragmentation needed"), the ``RTAX_MTU`` metric of ``RTM_GETROUTE``'s answer;
None when nothing is cached. :func:`flush_route_cache` forgets it.
"""

import os

from wirelab.errors import ConfigError
from wirelab.net.netns import entered

#: RFC 791: every IPv4 host must forward datagrams of 68 bytes without fragmenting.
IPV4_MIN_MTU = 68
MAX_MTU = 65535


def link_index(ipr, intf):
    """The ifindex of ``intf`` in the namespace ``ipr`` is bound to (a ConfigError if none)."""
    found = ipr.link_lookup(ifname=intf)
    if not found:
        raise ConfigError(f"no interface {intf!r}")
    return found[0]


def link_mtu(tb, node, intf):
    """The MTU of ``intf`` in ``node``, read back through netlink."""
    with tb.iproute(node) as ipr:
        return ipr.get_links(link_index(ipr, intf))[0].get_attr("IFLA_MTU")


class LinkMtu:
    """The MTU of the link ends ``ends`` (``[(node, intf), ...]``) set to ``mtu``."""

    kind = "mtu"

    def __init__(self, tb, ends, mtu):
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not IPV4_MIN_MTU <= mtu <= MAX_MTU:
            raise ConfigError(f"mtu={mtu!r}: {IPV4_MIN_MTU}..{MAX_MTU} bytes (RFC 791's minimum is 68)")
        if not ends:
            raise ConfigError("LinkMtu needs at least one (node, interface)")
        self.tb, self.mtu = tb, mtu
        self.ends = [(tb.resolve(node).name, intf) for node, intf in ends]
        self.before, self.readback = {}, {}
        self.live = False

    def apply(self):
        # Registered before the change, so an interrupted change is still undone.
        self.live = True
        self.tb.add_cleanup(f"restore MTU of {self.describe()}", self.remove)
        for node, intf in self.ends:
            with self.tb.iproute(node) as ipr:
                index = link_index(ipr, intf)
                self.before[f"{node}:{intf}"] = ipr.get_links(index)[0].get_attr("IFLA_MTU")
                ipr.link("set", index=index, mtu=self.mtu)
                self.readback[f"{node}:{intf}"] = ipr.get_links(index)[0].get_attr("IFLA_MTU")
        wrong = {k: v for k, v in self.readback.items() if v != self.mtu}
        if wrong:
            self.remove()
            raise ConfigError(f"MTU {self.mtu} asked, the kernel holds {wrong}")
        return self

    def remove(self):
        """Put the old MTUs back. Idempotent: True if this call restored them."""
        if not self.live:
            return False
        self.live = False
        for key, old in self.before.items():
            node, intf = key.split(":", 1)
            with self.tb.iproute(node) as ipr:
                ipr.link("set", index=link_index(ipr, intf), mtu=old)
        return True

    def describe(self):
        return ", ".join(f"{n}:{i}" for n, i in self.ends) + f" -> {self.mtu}"

    def to_dict(self):
        return {"kind": self.kind, "ends": [f"{n}:{i}" for n, i in self.ends], "mtu": self.mtu,
                "before": dict(self.before), "readback": dict(self.readback), "live": self.live}

    def __enter__(self):
        return self.apply()

    def __exit__(self, *exc):
        self.remove()
        return False


def route_mtu(tb, node, dst):
    """The path MTU ``node`` has cached for ``dst`` (``ip route get``'s ``mtu``), or None."""
    with tb.iproute(node) as ipr:
        route = ipr.route("get", dst=str(dst))[0]
    metrics = route.get_attr("RTA_METRICS")
    return metrics.get_attr("RTAX_MTU") if metrics else None


def flush_route_cache(tb, node):
    """Forget ``node``'s cached IPv4 routes and PMTU exceptions (``ip route flush
    cache``). IPv4 has no netlink message for it: iproute2 itself writes
    /proc/sys/net/ipv4/route/flush, which bumps the namespace's route
    generation so every cached exception is dropped on next use."""
    node = tb.resolve(node)
    with entered(node):
        fd = os.open("/proc/sys/net/ipv4/route/flush", os.O_WRONLY)
    try:
        os.write(fd, b"1")
    finally:
        os.close(fd)
