"""What the kernel's route lookup answers, predicted: longest-prefix match over
the tables read back from a router, with the special destinations the kernel
decides before or beside the FIB lookup (IPv4 and IPv6); and the destinations
that exercise a table (inside, at the edges of and just outside every prefix).

Pure functions over tables as ``experiments/routing.py`` saves them
(``lookups.json``), so verify can recompute every answer from the folder.
"""

import errno
import ipaddress

from wirelab.net.addressing import lpm


ZOOM_POINTS = 256   # evenly spaced destinations per nested prefix, for the LPM picture


def nested_chain(table):
    """The longest chain of prefixes in ``table`` each inside the previous one
    (e.g. 10.0.0.0/8 > 10.20.0.0/16 > 10.20.30.0/24), default route excluded."""
    nets = sorted({ipaddress.ip_network(r["dst"]) for r in table if not r["dst"].endswith("/0")},
                  key=lambda n: n.prefixlen)
    best = {}
    for net in nets:   # by increasing prefix length: parents come first
        parents = [best[p] for p in best if net != p and net.subnet_of(p)]
        best[net] = max(parents, key=len, default=[]) + [net]
    return max(best.values(), key=len, default=[])


def address(version, value):
    """An int (or text) as the IPv4 or IPv6 address of that version."""
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def evenly_spaced(net, count):
    first, size = int(net.network_address), net.num_addresses
    return [str(address(net.version, first + (size - 1) * i // (count - 1))) for i in range(count)]


def draw_destinations(tables, count, rng):
    """Addresses that exercise every prefix: inside, first/last, just outside, random."""
    candidates = []
    for route in tables:
        net = ipaddress.ip_network(route["dst"])
        first, last = int(net.network_address), int(net.broadcast_address)
        candidates += [first, last, first - 1, last + 1]
        for _ in range(3):
            candidates.append(rng.randint(first, last))
    picks = set()
    while len(picks) < count:
        if candidates and rng.random() < 0.7:
            value = rng.choice(candidates) % 2 ** 32
        else:
            value = rng.getrandbits(32)
        picks.add(str(ipaddress.IPv4Address(value)))
    return sorted(picks, key=lambda a: int(ipaddress.IPv4Address(a)))


# IPv6 destinations the kernel treats specially, drawn on every router.
IPV6_SPECIAL = ["::", "::1", "ff02::1", "ff02::2", "ff02::1:ff00:1", "ff05::1:3", "ff0e::1",
                "fe80::1", "fe80::ffff:ffff:ffff:ffff", "fe80:0:0:1::1", "febf::1",
                "::ffff:10.1.0.2", "2001:db8::1"]


def draw_destinations6(tables, count, rng, block):
    """IPv6 addresses that exercise every prefix of main and local (inside,
    first/last, just outside, random), random ones in the topology's block and
    anywhere, and :data:`IPV6_SPECIAL`."""
    candidates = []
    for route in tables["main"] + tables["local"]:
        net = ipaddress.ip_network(route["dst"])
        first, last = int(net.network_address), int(net.broadcast_address)
        candidates += [first, last, first - 1, last + 1]
        for _ in range(3):
            candidates.append(rng.randint(first, last))
    block = ipaddress.IPv6Network(block)
    picks = set(IPV6_SPECIAL)
    while len(picks) < count + len(IPV6_SPECIAL):
        x = rng.random()
        if candidates and x < 0.7:
            value = rng.choice(candidates) % 2 ** 128
        elif x < 0.85:
            value = rng.randint(int(block.network_address), int(block.broadcast_address))
        else:
            value = rng.getrandbits(128)
        picks.add(str(ipaddress.IPv6Address(value)))
    return sorted(picks, key=lambda a: int(ipaddress.IPv6Address(a)))


RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST, RTN_MULTICAST = 1, 2, 3, 4, 5
LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")


def reference_choice(local, main_table, dst):
    """What the kernel's output route lookup answers for ``dst``, predicted.

    Longest-prefix match over the tables in the order of the kernel's default
    policy rules (local, then main), with the special destinations that
    ip_route_output_key() decides before or beside the FIB lookup:
    0.0.0.0 means "this host" (local, via lo); 255.255.255.255 and multicast
    destinations take the matching route's device but are broadcast/multicast,
    never sent to a gateway. A local-type match goes out through lo.
    """
    addr = ipaddress.IPv4Address(dst)
    if int(addr) == 0:
        return {"table": "special", "type": RTN_LOCAL, "gateway": None, "dev": "lo"}
    route = lpm(local, dst)
    if route is not None:
        dev = "lo" if route["type"] == RTN_LOCAL else route["dev"]
        return {"table": "local", "type": route["type"], "gateway": None, "dev": dev}
    route = lpm(main_table, dst)
    if route is None:
        return None
    if addr == LIMITED_BROADCAST or addr in MULTICAST:
        kind = RTN_BROADCAST if addr == LIMITED_BROADCAST else RTN_MULTICAST
        return {"table": "main", "type": kind, "gateway": None, "dev": route["dev"]}
    return {"table": "main", "type": route["type"], "gateway": route["gateway"], "dev": route["dev"]}


def reference_choice6(local, main_table, dst):
    """What the kernel's IPv6 output route lookup answers for ``dst``, predicted.

    Longest-prefix match over local, then main (IPv6's default policy rules).
    A local-table match is local or anycast (an address of this router, or a
    subnet-router anycast address: out through lo) or multicast (ff00::/8,
    one route per interface in local: the first listed wins, and the packet is
    multicast on that device). Among equal prefixes and metrics the first route
    of the table wins (fe80::/64 exists once per interface: a link-local
    destination without a scope id takes the first). No match: ENETUNREACH
    (None), for :: too (unlike IPv4's 0.0.0.0, not "this host").
    """
    route = lpm(local, dst)
    if route is not None:
        dev = "lo" if route["type"] in (RTN_LOCAL, RTN_ANYCAST) else route["dev"]
        return {"table": "local", "type": route["type"], "gateway": None, "dev": dev}
    route = lpm(main_table, dst)
    if route is None:
        return None
    return {"table": "main", "type": route["type"], "gateway": route["gateway"], "dev": route["dev"]}


LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")


def special_kind6(ref, dst):
    """Which of IPv6's special cases the reference answer for ``dst`` is."""
    if ref is None:
        return "unreachable"
    if ref["type"] == RTN_LOCAL:
        return "loopback" if dst == "::1" else "local"
    if ref["type"] == RTN_ANYCAST:
        return "anycast"
    if ref["type"] == RTN_MULTICAST:
        return "multicast"
    if ipaddress.IPv6Address(dst) in LINK_LOCAL:
        return "link-local"
    return "unicast"


SPECIAL_KINDS6 = ("local", "loopback", "anycast", "multicast", "link-local", "unreachable")


def agrees(kernel, ref):
    """The kernel's answer equals the predicted one (no route: ENETUNREACH)."""
    if ref is None:
        return kernel.get("error") == errno.ENETUNREACH
    return ("error" not in kernel and kernel["dev"] == ref["dev"]
            and kernel["gateway"] == ref["gateway"] and kernel["type"] == ref["type"])
