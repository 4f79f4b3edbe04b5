"""Targeted faults: drop one exact packet of a TCP flow. The faults are data.

::

    h1 (client) ---- r1 [rules of run <id>] ---- h2 (server, port P)
                     prerouting (raw) -> every packet r1 receives
                     output     (raw) -> every packet r1 itself sends

Random loss (netem) proves little about one retransmission; these faults drop
*exactly one* chosen packet and count it, so an experiment can assert "segment
N was lost once and TCP recovered":

* :class:`DropNthDataSegment` -- the N-th segment carrying payload in one
  direction of the flow (pure ACKs do not count; retransmissions do, because the
  rule sees packets, not sequence numbers).
* :class:`DropSynAck` -- the first SYN-ACK from the server port.
* :class:`DropFirstFin` -- the first FIN in one direction.
* :class:`DropIcmpFragNeeded` -- *every* ICMP "fragmentation needed" (IPv6:
  "packet too big"): a path-MTU-discovery black hole (RFC 2923 sec. 2.1).

A fault is a frozen, validated dataclass: it says which packets are candidates
(as nft expressions and as xtables arguments) and which candidate to drop.
:meth:`Testbed.install_fault <wirelab.net.testbed.Testbed.install_fault>` puts
it into a node and returns a :class:`~wirelab.impair.impairments.FaultHandle`
with the counts; the rules are written by :mod:`wirelab.impair.nft` or
:mod:`wirelab.impair.xtables`.

"Carries data" is exact in both backends: IPv4 with header length 5 (no IP
options) and ``total length > 20 + 4 * tcp doff``, IPv6 with TCP as the first
next header (no extension headers) and ``payload length > 4 * tcp doff``, one
rule per data offset (nft: ``ip length``/``ip6 length``; xtables: one ``-m u32``
expression).
"""

import dataclasses
import ipaddress

from wirelab.errors import ConfigError, PreflightError

#: numgen's modulus / nth's period: the counter wraps only after this many packets.
NUMGEN_MOD = 2**32 - 1
_DIRECTIONS = ("to_server", "to_client")


class FaultsUnavailableError(PreflightError):
    """Neither backend can hold the rules here: nf_tables has no inet family
    (e.g. Debian's UML 6.1, built with the bridge family only) and legacy
    xtables is missing too."""


def _check_port(port, what="dport"):
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{what}={port!r}: a TCP port 1..65535")


def _address_match(field, addr):
    if addr is None:
        return ""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise ConfigError(f"{field}={addr!r}: not an IP address") from None
    family = "ip" if ip.version == 4 else "ip6"
    return f" {family} {field} {ip}"


@dataclasses.dataclass(frozen=True)
class Fault:
    """Base: subclasses say which packets are candidates and which one to drop.

    ``src``/``dst``: optional addresses of the dropped packet, to pin the flow's
    5-tuple when other TCP traffic uses the same port.
    """

    # Subclasses: the candidate filter inside the fault's chain, the flow
    # match for the hook chains (nft text; xtables argv per address family),
    # and which candidate (1-based) to drop. The backends read only these.
    def nft_candidates(self):
        raise NotImplementedError

    def nft_flow(self):
        raise NotImplementedError

    def xt_candidates(self, family):
        raise NotImplementedError

    def _xt_ports(self):
        raise NotImplementedError

    def nth_candidate(self):
        """Which candidate to drop (1-based); None: every candidate."""
        return 1

    def nft_l4proto(self):
        """The transport protocol the hook chains jump on (nft ``meta l4proto``)."""
        return "tcp"

    def xt_l4proto(self, family):
        """The same for iptables' ``-p`` in ``family`` (4 or 6)."""
        return "tcp"

    def describe(self):
        raise NotImplementedError

    def families(self):
        """Address families the fault can see: those of ``src``/``dst``, else both."""
        versions = {ipaddress.ip_address(a).version for a in (self.src, self.dst) if a is not None}
        if len(versions) > 1:
            raise ConfigError(f"src={self.src!r}, dst={self.dst!r}: one address family, not both")
        return tuple(sorted(versions)) or (4, 6)

    def xt_flow(self, family):
        """The flow match (ports, addresses) as iptables arguments."""
        args = list(self._xt_ports())
        for flag, addr in (("-s", self.src), ("-d", self.dst)):
            if addr is not None:
                args += [flag, str(ipaddress.ip_address(addr))]
        return args


def _direction(direction):
    if direction not in _DIRECTIONS:
        raise ConfigError(f"direction={direction!r}: one of {', '.join(_DIRECTIONS)}")


def _flow_match(direction, dport, src, dst):
    port = f" tcp dport {dport}" if direction == "to_server" else f" tcp sport {dport}"
    return port + _address_match("saddr", src) + _address_match("daddr", dst)


_DATA_CANDIDATES = tuple(
    [f"ip hdrlength 5 tcp doff {d} ip length > {20 + 4 * d}" for d in range(5, 16)]
    + [f"tcp doff {d} ip6 length > {4 * d}" for d in range(5, 16)])
# The same with u32: IPv4 header length 5, total length (low half of word 0)
# above 20 + 4 * doff, doff the top nibble of byte 32; IPv6 next header TCP,
# payload length (top half of word 4) above 4 * doff, doff at byte 52.
_XT_DATA_CANDIDATES = {
    4: tuple(["-m", "u32", "--u32", f"0>>24&0xF=5&&0&0xFFFF={21 + 4 * d}:0xFFFF&&32>>28={d}"]
             for d in range(5, 16)),
    6: tuple(["-m", "u32", "--u32", f"4>>8&0xFF=6&&4>>16={1 + 4 * d}:0xFFFF&&52>>28={d}"]
             for d in range(5, 16)),
}
_XT_SYNACK = (["-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,ACK", "SYN,ACK"],)
_XT_FIN = (["-p", "tcp", "-m", "tcp", "--tcp-flags", "FIN", "FIN"],)


def _xt_port(direction, dport):
    return ["-m", "tcp", "--dport" if direction == "to_server" else "--sport", str(dport)]


@dataclasses.dataclass(frozen=True)
class DropNthDataSegment(Fault):
    """Drop the ``n``-th TCP segment with payload going ``direction``.

    ``dport``: the server's listening port (``to_server``: packets to it,
    ``to_client``: packets from it). Counting starts when the fault is installed.
    """

    n: int = 1
    direction: str = "to_server"
    dport: int = None
    src: str = None
    dst: str = None

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n < NUMGEN_MOD:
            raise ConfigError(f"n={self.n!r}: the first data segment is n=1")
        _direction(self.direction)
        _check_port(self.dport)
        _flow_match(self.direction, self.dport, self.src, self.dst)  # validates addresses
        self.families()

    def nft_candidates(self):
        return _DATA_CANDIDATES

    def xt_candidates(self, family):
        return _XT_DATA_CANDIDATES[family]

    def _xt_ports(self):
        return _xt_port(self.direction, self.dport)

    def nft_flow(self):
        return _flow_match(self.direction, self.dport, self.src, self.dst)

    def nth_candidate(self):
        return self.n

    def describe(self):
        return f"drop data segment #{self.n} {self.direction.replace('_', ' ')} port {self.dport}"


@dataclasses.dataclass(frozen=True)
class DropSynAck(Fault):
    """Drop the first SYN-ACK sent from ``dport`` (any port if None)."""

    dport: int = None
    src: str = None
    dst: str = None

    def __post_init__(self):
        if self.dport is not None:
            _check_port(self.dport)
        _address_match("saddr", self.src)
        _address_match("daddr", self.dst)
        self.families()

    def nft_candidates(self):
        return ("tcp flags & (syn | ack) == syn | ack",)

    def xt_candidates(self, family):
        return _XT_SYNACK

    def _xt_ports(self):
        return ["-m", "tcp", "--sport", str(self.dport)] if self.dport is not None else []

    def nft_flow(self):
        port = f" tcp sport {self.dport}" if self.dport is not None else ""
        return port + _address_match("saddr", self.src) + _address_match("daddr", self.dst)

    def describe(self):
        return "drop the first SYN-ACK" + (f" from port {self.dport}" if self.dport else "")


@dataclasses.dataclass(frozen=True)
class DropFirstFin(Fault):
    """Drop the first FIN going ``direction`` of the flow on server port ``dport``.

    A FIN piggybacked on data is dropped with its data (it is one packet)."""

    direction: str = "to_server"
    dport: int = None
    src: str = None
    dst: str = None

    def __post_init__(self):
        _direction(self.direction)
        _check_port(self.dport)
        _flow_match(self.direction, self.dport, self.src, self.dst)
        self.families()

    def nft_candidates(self):
        return ("tcp flags & fin == fin",)

    def xt_candidates(self, family):
        return _XT_FIN

    def _xt_ports(self):
        return _xt_port(self.direction, self.dport)

    def nft_flow(self):
        return _flow_match(self.direction, self.dport, self.src, self.dst)

    def describe(self):
        return f"drop the first FIN {self.direction.replace('_', ' ')} port {self.dport}"


# ICMP type 3 code 4 (RFC 792, RFC 1191: the next-hop MTU in bytes 6-7) and
# ICMPv6 type 2 (RFC 4443 sec. 3.2, the MTU in bytes 4-7).
_NFT_TOO_BIG = {4: "icmp type destination-unreachable icmp code frag-needed",
                6: "icmpv6 type packet-too-big"}
_XT_TOO_BIG = {4: ["-p", "icmp", "-m", "icmp", "--icmp-type", "fragmentation-needed"],
               6: ["-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", "packet-too-big"]}
_NFT_ICMP = {4: "icmp", 6: "ipv6-icmp"}


@dataclasses.dataclass(frozen=True)
class DropIcmpFragNeeded(Fault):
    """Drop *every* ICMP "fragmentation needed" (IPv4 type 3 code 4; IPv6
    "packet too big", type 2) the node sends, forwards or receives: a path MTU
    discovery black hole (RFC 2923 sec. 2.1).

    On the router whose next hop has the smaller MTU, its output hook sees the
    ICMP the router itself generates for a DF packet too big to forward: the
    sender never learns the path MTU. ``src``/``dst``: optional addresses of
    the ICMP packet (``dst``: the sender it would have told). Every candidate is
    dropped (``nth_candidate()`` is None), so ``matched == dropped``.
    """

    src: str = None
    dst: str = None

    def __post_init__(self):
        _address_match("saddr", self.src)
        _address_match("daddr", self.dst)
        self.families()

    def nth_candidate(self):
        return None

    def nft_l4proto(self):
        protos = [_NFT_ICMP[f] for f in self.families()]
        return protos[0] if len(protos) == 1 else "{ " + ", ".join(protos) + " }"

    def xt_l4proto(self, family):
        return _NFT_ICMP[family]

    def nft_candidates(self):
        return tuple(_NFT_TOO_BIG[f] for f in self.families())

    def nft_flow(self):
        return _address_match("saddr", self.src) + _address_match("daddr", self.dst)

    def xt_candidates(self, family):
        return (_XT_TOO_BIG[family],)

    def _xt_ports(self):
        return []

    def describe(self):
        return ("drop every ICMP fragmentation-needed / packet-too-big"
                + (f" from {self.src}" if self.src else "") + (f" to {self.dst}" if self.dst else ""))
