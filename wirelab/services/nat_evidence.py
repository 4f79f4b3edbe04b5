"""NAT translations from conntrack, matched with captures on both sides of the router.

Pure functions over the dicts of :func:`wirelab.services.nat.read_conntrack`
and the packets of :func:`wirelab.observe.ipfrag.read_ip_packets`:

* :func:`translations`: each conntrack entry whose original source is inside
  the home network, as inside (address, port) -> outside (address, port) to a
  remote (address, port). The outside pair is the reply tuple's destination:
  where the far end sends its answers.
* :func:`match`: for each translation, the first packet of the connection in
  the LAN-side capture (inside -> remote) and in the WAN-side capture
  (outside -> remote), leaving no later than it arrived; and every connection
  a capture shows that conntrack does not explain.
"""

import dataclasses
import ipaddress

PROTO_NUMBERS = {"tcp": 6, "udp": 17}
SYN, ACK = 0x02, 0x10


@dataclasses.dataclass(frozen=True)
class Translation:
    proto: str
    inside: tuple       # (address, port) as the home host sent it
    outside: tuple      # (address, port) after the NAT: what the far end sees
    remote: tuple       # (address, port) of the far end
    tcp_state: str = None

    @property
    def port_changed(self):
        return self.inside[1] != self.outside[1]

    def to_dict(self):
        return {"proto": self.proto, "inside": f"{self.inside[0]}:{self.inside[1]}",
                "outside": f"{self.outside[0]}:{self.outside[1]}",
                "remote": f"{self.remote[0]}:{self.remote[1]}", "tcp_state": self.tcp_state,
                "port_changed": self.port_changed}


def translations(entries, inside_net, remote=None):
    """The source-NAT translations of ``entries`` for connections from
    ``inside_net``; ``remote`` (address, port): only those to it."""
    net = ipaddress.IPv4Network(inside_net)
    out = []
    for e in entries:
        o, r = e["orig"], e["reply"]
        if o["proto"] not in PROTO_NUMBERS or ipaddress.IPv4Address(o["src"]) not in net:
            continue
        if remote is not None and (o["dst"], o["dport"]) != tuple(remote):
            continue
        out.append(Translation(o["proto"], (o["src"], o["sport"]), (r["dst"], r["dport"]),
                               (o["dst"], o["dport"]), e.get("tcp_state")))
    return out


def flow_key(p):
    return (p.proto, p.src, p.sport, p.dst, p.dport)


def first_packets(packets):
    """{(proto, src, sport, dst, dport): first packet} of each TCP connection
    (its SYN without ACK) and each UDP flow (its first datagram)."""
    out = {}
    for p in packets:
        if p.sport is None:
            continue
        if p.proto == 6 and (p.tcp_flags is None or p.tcp_flags & (SYN | ACK) != SYN):
            continue
        if p.proto in (6, 17):
            out.setdefault(flow_key(p), p)
    return out


def match(trans, lan_packets, wan_packets, inside_net):
    """Each translation with its first packet on each side, and the strays.

    Returns ``(rows, strays)``: ``rows`` one dict per translation (``ok`` when
    both first packets are there and the WAN one is not earlier), ``strays``
    first packets that no translation explains: a connection from the home
    seen on the LAN side without one, or any packet on the WAN side whose
    source is still a home address (a leak)."""
    net = ipaddress.IPv4Network(inside_net)
    lan, wan = first_packets(lan_packets), first_packets(wan_packets)
    rows, explained = [], set()
    for t in trans:
        n = PROTO_NUMBERS[t.proto]
        k_lan, k_wan = (n, *t.inside, *t.remote), (n, *t.outside, *t.remote)
        a, b = lan.get(k_lan), wan.get(k_wan)
        explained.add(k_lan)
        why = []
        if a is None:
            why.append("no first packet on the LAN side")
        if b is None:
            why.append("no first packet on the WAN side")
        if a is not None and b is not None and b.ts_ns < a.ts_ns:
            why.append("WAN packet before the LAN one")
        rows.append({**t.to_dict(), "lan_t": a.ts_ns / 1e9 if a else None,
                     "wan_t": b.ts_ns / 1e9 if b else None,
                     "delay_us": (b.ts_ns - a.ts_ns) / 1e3 if a and b else None,
                     "ok": not why, "why": "; ".join(why)})
    strays = []
    for k, p in lan.items():
        src, dst = ipaddress.IPv4Address(p.src), ipaddress.IPv4Address(p.dst)
        if src in net and dst not in net and k not in explained:
            strays.append(f"LAN {p.src}:{p.sport} -> {p.dst}:{p.dport} has no conntrack translation")
    for p in wan_packets:
        if ipaddress.IPv4Address(p.src) in net:
            strays.append(f"WAN packet from the home address {p.src} (to {p.dst}): not translated")
            break
    return rows, strays


def outside_unique(trans):
    """Outside (address, port) pairs used by more than one translation of a protocol."""
    seen, dup = {}, []
    for t in trans:
        key = (t.proto, t.outside, t.remote)
        if key in seen:
            dup.append(f"{t.outside[0]}:{t.outside[1]} for {seen[key]} and {t.inside[0]}:{t.inside[1]}")
        seen[key] = f"{t.inside[0]}:{t.inside[1]}"
    return dup
