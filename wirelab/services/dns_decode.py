"""DNS messages read from a capture: one row per query or response.

Frames come from the house's pcap reader (:func:`wirelab.observe.pcap.iter_frames`),
IPv4/UDP or TCP on port 53 is picked out with dpkt, and the DNS message itself
is decoded by scapy's DNS layer. A row says who asked whom what, and what kind
of answer came back:

* ``query``    -- a question (``rd``: recursion desired, as a stub asks a resolver);
* ``referral`` -- no answer, not authoritative, NS records in the authority
  section: "ask them" (glue addresses in the additional section);
* ``answer``   -- answer records (``aa`` set when the zone's own server said it);
* ``nxdomain`` -- the name does not exist (the zone's SOA in the authority section);
* ``nodata`` / ``error`` -- no such record / any other rcode.
"""

import ipaddress

from wirelab.observe.pcap.decode import LINKTYPE_ETHERNET
from wirelab.observe.pcap.reader import PcapFormatError, iter_frames


class TruncatedDnsError(PcapFormatError):
    """A capture cut DNS messages short (a snaplen below the message size)."""


DNS_PORT = 53
DNS_HEADER_BYTES = 12    # RFC 1035 4.1.1
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _name(value):
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    value = str(value or ".")
    return value.lower() if value.endswith(".") else value.lower() + "."


def _rdata(rr, rtype):
    if rtype == "SOA":      # DNSRRSOA: fields of its own, no rdata
        return f"{_name(rr.mname)} {_name(rr.rname)} {rr.serial} {rr.refresh} {rr.retry} {rr.expire} {rr.minimum}"
    data = getattr(rr, "rdata", None)
    if rtype in ("NS", "CNAME", "PTR"):
        return _name(data)
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    if isinstance(data, list):
        return " ".join(d.decode(errors="replace") if isinstance(d, bytes) else str(d) for d in data)
    return str(data)


def _records(section):
    """scapy 2.6 keeps a section as a list of resource records."""
    from scapy.layers.dns import dnstypes
    out = []
    for rr in section or []:
        if rr.type == 41:       # OPT: EDNS, not a record
            continue
        rtype = dnstypes.get(rr.type, str(rr.type))
        out.append([_name(rr.rrname), rtype, int(rr.ttl), _rdata(rr, rtype)])
    return out


def classify(qr, rcode, aa, answer, authority):
    """The kind of a message (see the module docstring)."""
    if not qr:
        return "query"
    if rcode == "NXDOMAIN":
        return "nxdomain"
    if rcode != "NOERROR":
        return "error"
    if answer:
        return "answer"
    if not aa and any(r[1] == "NS" for r in authority):
        return "referral"
    return "nodata"


def decode_message(payload):
    """One DNS message (bytes) -> dict, or None when it does not parse."""
    from scapy.layers.dns import DNS, dnsqtypes
    if len(payload) < DNS_HEADER_BYTES:     # scapy would fill in its defaults
        return None
    try:
        m = DNS(payload)
    except Exception:   # scapy raises many kinds on garbage; a row is simply not made
        return None
    if m.qd is None and not m.qdcount:
        qname, qtype = None, None
    else:
        q = m.qd[0] if isinstance(m.qd, list) else m.qd
        qname, qtype = _name(q.qname), dnsqtypes.get(q.qtype, str(q.qtype))
    rcode = RCODES.get(m.rcode, str(m.rcode))
    answer, authority, additional = _records(m.an), _records(m.ns), _records(m.ar)
    return {"id": m.id, "qr": bool(m.qr), "rd": bool(m.rd), "ra": bool(m.ra), "aa": bool(m.aa),
            "rcode": rcode, "qname": qname, "qtype": qtype, "answer": answer,
            "authority": authority, "additional": additional,
            "kind": classify(m.qr, rcode, m.aa, answer, authority)}


def decode_dns(pcap):
    """Every DNS message in ``pcap`` (Ethernet, IPv4; UDP, or TCP segments that
    hold whole messages) -> rows {t, src, dst, sport, dport, proto, ...message}."""
    import dpkt
    rows = []
    for linktype, ts_ns, frame in iter_frames(pcap):
        if linktype != LINKTYPE_ETHERNET:
            raise PcapFormatError(f"{pcap}: link type {linktype}, expected Ethernet ({LINKTYPE_ETHERNET})")
        ip = dpkt.ethernet.Ethernet(frame).data
        if not isinstance(ip, dpkt.ip.IP) or ip.p not in (dpkt.ip.IP_PROTO_UDP, dpkt.ip.IP_PROTO_TCP):
            continue
        seg = ip.data
        if not hasattr(seg, "sport") or DNS_PORT not in (seg.sport, seg.dport):
            continue
        payload = bytes(seg.data)
        proto = "udp" if ip.p == dpkt.ip.IP_PROTO_UDP else "tcp"
        if proto == "udp" and seg.ulen - 8 > len(payload):
            raise TruncatedDnsError(
                f"{pcap}: a DNS message cut at {len(payload)} of {seg.ulen - 8} bytes: the capture kept "
                f"too little of each packet (DNS captures need whole packets: snaplen 0)")
        if proto == "tcp":      # a 2-byte length, then the message (RFC 1035 4.2.2)
            if len(payload) < 2 or int.from_bytes(payload[:2], "big") != len(payload) - 2:
                continue
            payload = payload[2:]
        msg = decode_message(payload)
        if msg is None:
            continue
        rows.append({"t": ts_ns / 1e9, "src": str(ipaddress.IPv4Address(ip.src)),
                     "dst": str(ipaddress.IPv4Address(ip.dst)), "sport": seg.sport,
                     "dport": seg.dport, "proto": proto, **msg})
    return rows


def pair(rows):
    """[(query row, its response row or None)]: a response answers the query
    with the same id, question, and swapped addresses and ports."""
    out, open_ = [], {}
    for r in rows:
        key = (r["id"], r["qname"], r["qtype"])
        if not r["qr"]:
            q = (key, r["src"], r["sport"], r["dst"], r["dport"])
            open_[q] = len(out)
            out.append([r, None])
        else:
            q = (key, r["dst"], r["dport"], r["src"], r["sport"])
            i = open_.pop(q, None)
            if i is not None:
                out[i][1] = r
    return [tuple(p) for p in out]


def summary(row):
    """One line for a person: what was asked, or what came back."""
    q = f"{row['qname']} {row['qtype']}"
    if row["kind"] == "query":
        return f"? {q}" + (" (rd)" if row["rd"] else "")
    if row["kind"] == "referral":
        ns = sorted({r[3] for r in row["authority"] if r[1] == "NS"})
        zone = next(r[0] for r in row["authority"] if r[1] == "NS")
        glue = sorted({f"{r[0]} {r[3]}" for r in row["additional"] if r[1] == "A"})
        return f"referral: {zone} NS {', '.join(ns)}" + (f"; glue {', '.join(glue)}" if glue else "")
    if row["kind"] == "answer":
        return "answer" + (" (aa)" if row["aa"] else "") + ": " + \
            "; ".join(f"{r[0]} {r[2]} {r[1]} {r[3]}" for r in row["answer"])
    if row["kind"] == "nxdomain":
        soa = next((r[0] for r in row["authority"] if r[1] == "SOA"), "?")
        return f"NXDOMAIN (SOA of {soa})"
    return f"{row['kind']} {row['rcode']}"
