"""Bogons: addresses that are not on the public Internet, so no place can be said.

ipinfo answers such an address with ``{"ip": ..., "bogon": true}`` and nothing
else; so do we, adding the reserved range that matched and why it is reserved.
The ranges are the IANA special-purpose registries (RFC 6890 and the RFCs it
collects, named per range) plus multicast and the former class E.

Our own database answers first for the addresses it holds (the emulated network
is numbered in private space on purpose): see :mod:`wirelab.geo.lookup`.
"""

import ipaddress

# (range, why) -- the RFC that reserves it.
BOGON_RANGES = [
    ("0.0.0.0/8", "'this network' (RFC 791, RFC 1122)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT shared space (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved, former class E (RFC 1112)"),   # holds 255.255.255.255
    ("::/128", "unspecified (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::/96", "IPv4-compatible, deprecated (RFC 4291)"),
    ("::ffff:0:0/96", "IPv4-mapped (RFC 4291)"),
    ("64:ff9b::/96", "IPv4/IPv6 translation (RFC 6052)"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056): the location is the embedded IPv4 address's"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "site-local, deprecated (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
]

_NETWORKS = [(ipaddress.ip_network(net), why) for net, why in BOGON_RANGES]


def bogon(address):
    """``(range, why)`` of the most specific reserved range holding ``address``
    (an ``ipaddress`` address), or None for a public address."""
    best = None
    for net, why in _NETWORKS:
        if net.version == address.version and address in net:
            if best is None or net.prefixlen > best[0].prefixlen:
                best = (net, why)
    return best
