"""Targeted faults: drop one exact packet of a TCP flow, with nftables.

::

    h1 (client) ---- r1 [nft table wl_<run id>] ---- h2 (server, port P)
                     prerouting  (raw, -300) -> every packet r1 receives
                     output      (raw, -300) -> every packet r1 itself sends

Random loss (netem) proves little about one retransmission; these faults drop
*exactly one* chosen packet and count it, so an experiment can assert "segment
N was lost once and TCP recovered":

* :class:`DropNthDataSegment` -- the N-th segment carrying payload in one
  direction of the flow (pure ACKs do not count; retransmissions do, because the
  rule sees packets, not sequence numbers).
* :class:`DropSynAck` -- the first SYN-ACK from the server port.
* :class:`DropFirstFin` -- the first FIN in one direction.

How it is exact: each fault's packets reach a rule ``numgen inc mod 2**32-1
== N-1 drop``. ``numgen inc`` is a per-rule counter the kernel increments
atomically each time the rule is evaluated, so only the N-th matching packet is
dropped, once (until 4 billion more packets wrap it). nftables has no payload
length; "carries data" is IPv4 ``ip length > 20 + 4 * tcp doff`` (header length
5, i.e. no IP options) or IPv6 ``ip6 length > 4 * tcp doff`` (no extension
headers), one rule per data offset. Both hooks run at raw priority, before
conntrack, so a dropped packet leaves no state behind on the node.

Rules live in one table per node, ``inet wl_<run id>``, in the node's own
namespace, written with ``nft -f -`` (argv, no shell) and deleted at teardown
(``tb.add_cleanup``); counters are read back as JSON (``nft -j``). The final
counts are kept, so :meth:`Fault.dropped` still answers after the run.
"""

import dataclasses
import ipaddress
import json
import os
import weakref

from .errors import CommandError, ConfigError, PreflightError, WirelabError

#: numgen's modulus: the counter wraps only after this many packets.
_NUMGEN_MOD = 2**32 - 1
#: Before conntrack (-200) and everything else, after defragmentation (-400).
_PRIORITY = -300
_DIRECTIONS = ("to_server", "to_client")
_NFT_TIMEOUT = 10

class FaultsUnavailableError(PreflightError):
    """The kernel's nf_tables cannot hold an inet table (e.g. Debian's UML 6.1,
    built with the bridge family only): install faults on a full kernel."""


# tb -> {node name: _Table}
_TABLES = weakref.WeakKeyDictionary()


def table_name(run_id):
    """nftables table for a run: identifiers may hold letters, digits, _ and -."""
    return f"wl_{run_id}"


class _Table:
    """The run's nft table in one node: created on first use, deleted at teardown."""

    def __init__(self, tb, node):
        self.tb, self.node = tb, node
        self.name = table_name(tb.run_id)
        self.faults = []
        try:
            tb.run(node, ["nft", "-f", "-"], timeout=_NFT_TIMEOUT, input=(
                f"table inet {self.name} {{\n"
                f"  chain pre {{ type filter hook prerouting priority {_PRIORITY}; policy accept; }}\n"
                f"  chain out {{ type filter hook output priority {_PRIORITY}; policy accept; }}\n"
                "}\n"))
        except CommandError as exc:
            if "Operation not supported" in exc.stderr or "No such file or directory" in exc.stderr:
                raise FaultsUnavailableError(
                    f"this kernel's nf_tables has no inet family ({os.uname().release}): "
                    "targeted faults need the host kernel, not User-Mode Linux") from exc
            raise
        tb.add_cleanup(f"nft table {self.name} on {node.name}", self.remove)

    def load(self, text):
        self.tb.run(self.node, ["nft", "-f", "-"], timeout=_NFT_TIMEOUT, input=text)

    def counters(self):
        """``{counter name: packets}`` read back from the kernel."""
        done = self.tb.run(self.node, ["nft", "-j", "list", "counters", "table", "inet", self.name],
                           timeout=_NFT_TIMEOUT)
        out = {}
        for item in json.loads(done.stdout).get("nftables", []):
            c = item.get("counter")
            if c and c.get("table") == self.name:
                out[c["name"]] = c["packets"]
        return out

    def remove(self):
        """Keep the final counts for each fault, then delete the table."""
        try:
            final = self.counters()
        except WirelabError:
            final = {}
        for fault in self.faults:
            fault._final = {k: final.get(f"{fault._prefix}_{k}", 0) for k in ("matched", "dropped")}
        self.tb.run(self.node, ["nft", "delete", "table", "inet", self.name],
                    timeout=_NFT_TIMEOUT, check=False)
        tables = _TABLES.get(self.tb, {})
        tables.pop(self.node.name, None)


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


@dataclasses.dataclass
class Fault:
    """Base: subclasses say which packets are candidates and which one to drop.

    ``src``/``dst``: optional addresses of the dropped packet, to pin the flow's
    5-tuple when other TCP traffic uses the same port.
    """

    def __post_init__(self):
        self._table = None
        self._prefix = None
        self._final = None

    # subclasses: the candidate filter inside the fault's chain, the flow
    # match for the hook chains, and which candidate (1-based) to drop.
    def _candidates(self):
        raise NotImplementedError

    def _flow(self):
        raise NotImplementedError

    def _nth(self):
        return 1

    def describe(self):
        raise NotImplementedError

    def install(self, tb, node):
        """Put the rules into ``node``'s namespace; removed at ``tb`` teardown."""
        if self._table is not None:
            raise ConfigError(f"{self.describe()}: already installed on {self._table.node.name}")
        node = tb.node(node) if isinstance(node, str) else node
        tables = _TABLES.setdefault(tb, {})
        table = tables.get(node.name)
        if table is None:
            table = tables[node.name] = _Table(tb, node)
        prefix = f"f{len(table.faults)}"
        # Count every fault even before it is installed completely, so the
        # table's teardown can record it.
        lines = [f"table inet {table.name} {{",
                 f"  counter {prefix}_matched {{ }}",
                 f"  counter {prefix}_dropped {{ }}",
                 f"  chain {prefix}_hit {{",
                 f'    counter name "{prefix}_matched" numgen inc mod {_NUMGEN_MOD} {self._nth() - 1}'
                 f' counter name "{prefix}_dropped" drop',
                 "  }",
                 f"  chain {prefix} {{"]
        lines += [f"    {c} goto {prefix}_hit" for c in self._candidates()]
        lines += ["  }",
                  f"  chain pre {{ meta l4proto tcp{self._flow()} jump {prefix}; }}",
                  f"  chain out {{ meta l4proto tcp{self._flow()} jump {prefix}; }}",
                  "}"]
        table.load("\n".join(lines) + "\n")
        table.faults.append(self)
        self._table, self._prefix = table, prefix
        return self

    def counts(self):
        """``{'matched': candidates seen, 'dropped': packets dropped}``."""
        if self._table is None:
            raise ConfigError(f"{self.describe()}: not installed")
        if self._final is not None:
            return dict(self._final)
        now = self._table.counters()
        return {k: now.get(f"{self._prefix}_{k}", 0) for k in ("matched", "dropped")}

    def dropped(self):
        """How many packets this fault dropped (1 once it fired, never more)."""
        return self.counts()["dropped"]

    def matched(self):
        """How many candidate packets reached the fault (dropped one included)."""
        return self.counts()["matched"]


def _direction(direction):
    if direction not in _DIRECTIONS:
        raise ConfigError(f"direction={direction!r}: one of {', '.join(_DIRECTIONS)}")


def _flow_match(direction, dport, src, dst):
    port = f" tcp dport {dport}" if direction == "to_server" else f" tcp sport {dport}"
    return port + _address_match("saddr", src) + _address_match("daddr", dst)


_DATA_CANDIDATES = tuple(
    [f"ip hdrlength 5 tcp doff {d} ip length > {20 + 4 * d}" for d in range(5, 16)]
    + [f"tcp doff {d} ip6 length > {4 * d}" for d in range(5, 16)])


@dataclasses.dataclass
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
        super().__post_init__()
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n < _NUMGEN_MOD:
            raise ConfigError(f"n={self.n!r}: the first data segment is n=1")
        _direction(self.direction)
        _check_port(self.dport)
        _flow_match(self.direction, self.dport, self.src, self.dst)  # validates addresses

    def _candidates(self):
        return _DATA_CANDIDATES

    def _flow(self):
        return _flow_match(self.direction, self.dport, self.src, self.dst)

    def _nth(self):
        return self.n

    def describe(self):
        return f"drop data segment #{self.n} {self.direction.replace('_', ' ')} port {self.dport}"


@dataclasses.dataclass
class DropSynAck(Fault):
    """Drop the first SYN-ACK sent from ``dport`` (any port if None)."""

    dport: int = None
    src: str = None
    dst: str = None

    def __post_init__(self):
        super().__post_init__()
        if self.dport is not None:
            _check_port(self.dport)
        _address_match("saddr", self.src)
        _address_match("daddr", self.dst)

    def _candidates(self):
        return ("tcp flags & (syn | ack) == syn | ack",)

    def _flow(self):
        port = f" tcp sport {self.dport}" if self.dport is not None else ""
        return port + _address_match("saddr", self.src) + _address_match("daddr", self.dst)

    def describe(self):
        return "drop the first SYN-ACK" + (f" from port {self.dport}" if self.dport else "")


@dataclasses.dataclass
class DropFirstFin(Fault):
    """Drop the first FIN going ``direction`` of the flow on server port ``dport``.

    A FIN piggybacked on data is dropped with its data (it is one packet)."""

    direction: str = "to_server"
    dport: int = None
    src: str = None
    dst: str = None

    def __post_init__(self):
        super().__post_init__()
        _direction(self.direction)
        _check_port(self.dport)
        _flow_match(self.direction, self.dport, self.src, self.dst)

    def _candidates(self):
        return ("tcp flags & fin == fin",)

    def _flow(self):
        return _flow_match(self.direction, self.dport, self.src, self.dst)

    def describe(self):
        return f"drop the first FIN {self.direction.replace('_', ' ')} port {self.dport}"
