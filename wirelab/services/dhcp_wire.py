"""DHCP messages read from a capture, and the exchanges they make (pure functions).

    msgs = read_dhcp("lan.pcap")                  # every BOOTP/DHCP message, in order
    dora(msgs, "02:..:01")  -> Exchange: DISCOVER, OFFER, REQUEST, ACK of one client
    renewals(msgs, "02:..:01") -> [Renewal]: unicast REQUEST (ciaddr set) and its ACK

The decoder follows RFC 2131 (the fixed BOOTP header: op, xid, ciaddr,
yiaddr, siaddr, chaddr; then the magic cookie 99.130.83.99) and RFC 2132 (the
options: 53 message type, 54 server identifier, 50 requested address, 51 lease
time, 58 T1, 59 T2, 1 netmask, 3 routers, 6 DNS servers). Frames come from the
house's pcap reader (:func:`wirelab.observe.pcap.iter_frames`); UDP ports 67/68
select the messages. The unit tests build messages with scapy's BOOTP/DHCP
layers and read them back here.
"""

import dataclasses
import ipaddress
import struct

from wirelab.observe.ipfrag import _ip_offset
from wirelab.observe.pcap import iter_frames

SERVER_PORT, CLIENT_PORT = 67, 68
MAGIC = b"\x63\x82\x53\x63"
BOOTP_FIXED = 236          # op .. file, before the magic cookie
TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
         7: "RELEASE", 8: "INFORM"}
OPT_NETMASK, OPT_ROUTER, OPT_DNS, OPT_REQUESTED, OPT_LEASE = 1, 3, 6, 50, 51
OPT_TYPE, OPT_SERVER_ID, OPT_T1, OPT_T2 = 53, 54, 58, 59
BROADCAST = "255.255.255.255"
ANY = "0.0.0.0"


def _ip(raw):
    return str(ipaddress.IPv4Address(raw))


def _ips(raw):
    return [_ip(raw[i:i + 4]) for i in range(0, len(raw) - len(raw) % 4, 4)]


def _u32(raw):
    return struct.unpack("!I", raw)[0] if len(raw) == 4 else None


@dataclasses.dataclass(frozen=True)
class DhcpMessage:
    """One BOOTP/DHCP message as captured."""

    index: int            # position in the capture
    ts_ns: int
    eth_src: str
    eth_dst: str
    ip_src: str
    ip_dst: str
    sport: int
    dport: int
    op: int               # 1 BOOTREQUEST, 2 BOOTREPLY
    xid: int
    ciaddr: str
    yiaddr: str
    siaddr: str
    chaddr: str           # the client's MAC (hlen bytes of chaddr)
    options: dict         # code -> bytes

    @property
    def kind(self):
        raw = self.options.get(OPT_TYPE)
        return TYPES.get(raw[0], f"TYPE{raw[0]}") if raw else "BOOTP"

    @property
    def t(self):
        return self.ts_ns / 1e9

    @property
    def broadcast(self):
        return self.ip_dst == BROADCAST

    def _opt_ip(self, code):
        raw = self.options.get(code)
        return _ip(raw) if raw and len(raw) == 4 else None

    @property
    def server_id(self):
        return self._opt_ip(OPT_SERVER_ID)

    @property
    def requested_ip(self):
        return self._opt_ip(OPT_REQUESTED)

    @property
    def netmask(self):
        return self._opt_ip(OPT_NETMASK)

    @property
    def routers(self):
        return _ips(self.options.get(OPT_ROUTER, b""))

    @property
    def dns(self):
        return _ips(self.options.get(OPT_DNS, b""))

    @property
    def lease_s(self):
        return _u32(self.options.get(OPT_LEASE, b""))

    @property
    def t1_s(self):
        return _u32(self.options.get(OPT_T1, b""))

    @property
    def t2_s(self):
        return _u32(self.options.get(OPT_T2, b""))

    def to_dict(self):
        return {"t": self.t, "kind": self.kind, "xid": self.xid, "chaddr": self.chaddr,
                "ip_src": self.ip_src, "ip_dst": self.ip_dst, "ciaddr": self.ciaddr, "yiaddr": self.yiaddr,
                "server_id": self.server_id, "requested_ip": self.requested_ip, "lease_s": self.lease_s,
                "t1_s": self.t1_s, "routers": self.routers, "dns": self.dns, "netmask": self.netmask}


def _mac(raw):
    return ":".join(f"{b:02x}" for b in raw)


def parse_options(buf, at):
    """RFC 2132 options from ``at`` to the end option (255); pad (0) skipped."""
    options = {}
    while at < len(buf):
        code = buf[at]
        if code == 255:
            break
        if code == 0:
            at += 1
            continue
        if at + 1 >= len(buf):
            break
        length = buf[at + 1]
        value = bytes(buf[at + 2:at + 2 + length])
        if len(value) < length:
            break                      # cut short (snaplen): keep what is whole
        options[code] = options.get(code, b"") + value   # RFC 3396: repeated codes concatenate
        at += 2 + length
    return options


def parse_dhcp(frame, linktype, index=0, ts_ns=0):
    """The :class:`DhcpMessage` in one captured frame, or None (not DHCP)."""
    at = _ip_offset(linktype, frame)
    if at is None or len(frame) < at + 20:
        return None
    ihl = (frame[at] & 0x0F) * 4
    if frame[at + 9] != 17 or struct.unpack_from("!H", frame, at + 6)[0] & 0x3FFF:
        return None                    # not UDP, or a fragment
    udp = at + ihl
    if len(frame) < udp + 8:
        return None
    sport, dport = struct.unpack_from("!HH", frame, udp)
    if {sport, dport} != {SERVER_PORT, CLIENT_PORT}:
        return None
    b = udp + 8
    if len(frame) < b + BOOTP_FIXED + 4:
        return None
    op, _htype, hlen = frame[b], frame[b + 1], frame[b + 2]
    xid = struct.unpack_from("!I", frame, b + 4)[0]
    options = {}
    if bytes(frame[b + BOOTP_FIXED:b + BOOTP_FIXED + 4]) == MAGIC:
        options = parse_options(frame, b + BOOTP_FIXED + 4)
    eth = (_mac(frame[6:12]), _mac(frame[0:6])) if at >= 14 else (None, None)
    return DhcpMessage(index=index, ts_ns=ts_ns, eth_src=eth[0], eth_dst=eth[1],
                       ip_src=_ip(frame[at + 12:at + 16]), ip_dst=_ip(frame[at + 16:at + 20]),
                       sport=sport, dport=dport, op=op, xid=xid,
                       ciaddr=_ip(frame[b + 12:b + 16]), yiaddr=_ip(frame[b + 16:b + 20]),
                       siaddr=_ip(frame[b + 20:b + 24]), chaddr=_mac(frame[b + 28:b + 28 + min(hlen, 16)]),
                       options=options)


def read_dhcp(path):
    """Every DHCP message of a capture (whole packets: ``snaplen`` 0), in file order."""
    out = []
    for index, (linktype, ts_ns, frame) in enumerate(iter_frames(path)):
        msg = parse_dhcp(bytes(frame), linktype, index, ts_ns)
        if msg is not None:
            out.append(msg)
    return out


# -- exchanges ----------------------------------------------------------------------------

@dataclasses.dataclass
class Exchange:
    """One client's DISCOVER -> OFFER -> REQUEST -> ACK (same xid), or why not."""

    chaddr: str
    messages: list            # the four, in order (those found)
    ok: bool
    why: str = ""

    @property
    def ack(self):
        return self.messages[3] if self.ok else None

    def to_dict(self):
        return {"chaddr": self.chaddr, "ok": self.ok, "why": self.why,
                "messages": [m.to_dict() for m in self.messages]}


def of_client(messages, chaddr):
    """The messages of one client's transactions (its chaddr), in capture order."""
    return [m for m in messages if m.chaddr == chaddr.lower()]


def dora(messages, chaddr):
    """The client's first complete DORA: DISCOVER, OFFER, REQUEST (selecting: with
    server id and requested address = the offer), ACK of that address, one xid,
    in this order in time. ``ok`` False with the step that is missing."""
    mine = of_client(messages, chaddr)
    for d in (m for m in mine if m.kind == "DISCOVER"):
        found = [d]
        want = [("OFFER", lambda m: m.op == 2),
                ("REQUEST", lambda m: m.op == 1 and m.server_id == found[1].server_id
                 and m.requested_ip == found[1].yiaddr),
                ("ACK", lambda m: m.op == 2 and m.yiaddr == found[2].requested_ip)]
        for kind, check in want:
            nxt = next((m for m in mine if m.index > found[-1].index and m.xid == d.xid
                        and m.kind == kind and check(m)), None)
            if nxt is None:
                break
            found.append(nxt)
        if len(found) == 4:
            return Exchange(chaddr, found, True)
    kinds = [m.kind for m in mine]
    return Exchange(chaddr, [], False, f"no complete DISCOVER/OFFER/REQUEST/ACK; seen {kinds[:12]}")


@dataclasses.dataclass(frozen=True)
class Renewal:
    """A RENEWING client's REQUEST (unicast to its server, ciaddr = its lease, no
    requested-address option: RFC 2131 4.3.2) and the server's answer."""

    request: DhcpMessage
    answer: DhcpMessage       # ACK or NAK, None if none came
    after: DhcpMessage        # the ACK this renewal follows (the lease it renews)

    @property
    def interval_s(self):
        return (self.request.ts_ns - self.after.ts_ns) / 1e9

    def to_dict(self):
        return {"request": self.request.to_dict(), "answer": self.answer and self.answer.to_dict(),
                "after_ack_t": self.after.t, "interval_s": self.interval_s}


def renewals(messages, chaddr):
    """Every renewal of one client after its first ACK, each with the ACK it follows."""
    mine = of_client(messages, chaddr)
    out, last_ack = [], None
    for m in mine:
        if m.kind == "ACK":
            last_ack = m
            continue
        if (last_ack is not None and m.kind == "REQUEST" and m.ciaddr == last_ack.yiaddr
                and not m.broadcast and m.ip_dst == last_ack.server_id and m.requested_ip is None):
            answer = next((a for a in mine if a.index > m.index and a.xid == m.xid
                           and a.kind in ("ACK", "NAK")), None)
            out.append(Renewal(m, answer, last_ack))
    return out
