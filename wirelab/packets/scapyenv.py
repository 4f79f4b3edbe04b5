"""scapy, loaded quietly and pointed at the network namespace we are in.

scapy reads the interface list, the routing tables and (lazily) the ARP cache
when it is imported and keeps them. A fresh process started inside a node
(``tb.run(host, [...])``, ``h1 wirelab packet ...`` in Mininet's CLI) imports
scapy there, so its view is right. A process that *moves* into a namespace
(``setns``, as :mod:`wirelab.net.netns` does) keeps the view of the namespace
it came from: the wrong interfaces, routes and MAC addresses. Every tool goes
through :func:`load`, and in-process users enter a node with :func:`entered`,
which refreshes that view on the way in and again on the way out.

    with scapyenv.entered(tb["h1"]):
        reply = sr1(IP(dst=tb.ip("h2")) / ICMP(), timeout=1)
"""

import contextlib
import logging

_loaded = None


def load():
    """Import scapy once, without its start-up warnings; return ``scapy.config.conf``.

    scapy logs to "scapy.runtime" at import ("No IPv4 address found on ...",
    "Mac address to reach destination not found", ...): harmless in a small
    namespace, noise in a tool whose output is parsed.
    """
    global _loaded
    if _loaded is None:
        for name in ("scapy.runtime", "scapy.loading", "scapy.interactive"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from scapy.config import conf
        import scapy.layers.inet  # noqa: F401  (IP, ICMP, UDP, TCP; registers the IPv4 route table)
        import scapy.layers.l2  # noqa: F401  (Ether, ARP, CookedLinux: link types for pcaps)
        conf.verb = 0
        _loaded = conf
    return _loaded


def refresh():
    """Read interfaces, routes (IPv4 and IPv6) and forget cached MAC addresses
    again, from the namespace the calling thread is in now."""
    conf = load()
    conf.route.resync()          # first: the interface list picks conf.iface from the routes
    conf.ifaces.reload()
    if getattr(conf, "route6", None) is not None:
        conf.route6.resync()
    conf.netcache.flush()        # MACs learnt elsewhere belong to other hosts


@contextlib.contextmanager
def entered(node):
    """Run the body in ``node``'s network namespace (a Mininet node or a pid)
    with scapy's view of interfaces and routes refreshed there, and restored
    after. Sockets opened and threads started inside (``sr1``, ``AsyncSniffer``)
    stay in that namespace: Linux gives a new thread its creator's namespace."""
    from wirelab.net.netns import entered as netns_entered
    load()
    try:
        with netns_entered(node):
            refresh()
            yield
    finally:
        refresh()
