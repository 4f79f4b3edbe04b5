"""Parse the output of the traceroute binary (``traceroute -n``) into hops.

traceroute has no structured output mode, so this parser is strict: every line
after the header must be a hop line (``TTL`` then, per probe, an address with
its round-trip times, or ``*``), or it raises ``ValueError`` naming the line.
Annotations such as ``!H`` or ``!N`` are kept per probe.

    >>> parse(" 1  10.0.0.2  0.101 ms  0.031 ms *\\n")[0]["probes"][2]
    {'addr': None, 'rtt_ms': None, 'note': None}
"""

import ipaddress
import re

_NOTE = re.compile(r"^!(\w*|<\d+>)$")


def _is_addr(token):
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


def parse(text):
    """Hops ``[{ttl, probes: [{addr, rtt_ms, note}], addrs}]`` from traceroute -n output."""
    hops = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("traceroute to"):
            continue
        tokens = line.split()
        if not tokens[0].isdigit():
            raise ValueError(f"not a traceroute hop line: {line!r}")
        ttl = int(tokens[0])
        probes = []
        addr = None
        i = 1
        while i < len(tokens):
            tok = tokens[i]
            if tok == "*":
                probes.append({"addr": None, "rtt_ms": None, "note": None})
                i += 1
            elif _is_addr(tok):
                addr = tok
                i += 1
            elif i + 1 < len(tokens) and tokens[i + 1] == "ms":
                if addr is None:
                    raise ValueError(f"round-trip time before any address: {line!r}")
                probes.append({"addr": addr, "rtt_ms": float(tok), "note": None})
                i += 2
            elif _NOTE.match(tok) and probes:
                probes[-1]["note"] = tok
                i += 1
            else:
                raise ValueError(f"unexpected token {tok!r} in traceroute line: {line!r}")
        addrs = [p["addr"] for p in probes if p["addr"]]
        hops.append({"ttl": ttl, "probes": probes,
                     "addr": max(set(addrs), key=addrs.count) if addrs else None})
    for expected, hop in enumerate(hops, 1):
        if hop["ttl"] != expected:
            raise ValueError(f"traceroute hops out of order: expected TTL {expected}, got {hop['ttl']}")
    return hops
