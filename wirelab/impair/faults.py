"""Targeted faults: drop one exact packet of a TCP flow, with nftables or xtables.

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

Two backends, same faults, same counts (``install(tb, node, backend=...)``):

``nft`` (preferred): one table per node, ``inet wl_<run id>``, chains at
priority -300 (before conntrack, after defragmentation), written with ``nft -f -``
and read back as JSON (``nft -j``). Each fault's candidates reach a rule
``numgen inc mod 2**32-1 == N-1 drop``: ``numgen inc`` is a per-rule counter
the kernel increments atomically each time the rule is evaluated, so only the
N-th candidate is dropped, once (until 4 billion more packets wrap it).

``xtables`` (where nf_tables cannot hold an inet table, e.g. Debian's UML 6.1):
``iptables-legacy`` / ``ip6tables-legacy``, a chain ``wl_<run id>`` in the
``raw`` table jumped to first from PREROUTING and OUTPUT (``mangle``, or
``filter`` INPUT/FORWARD/OUTPUT, if the kernel has no raw table), and per fault
a candidate chain ``...d<i>`` and a hit chain ``...h<i>``. The hit chain's first
rule only counts (``matched``); its second drops ``-m statistic --mode nth
--every 4294967295 --packet N-1`` (the N-th packet that reaches the match: it is
the last test before the latch, so only candidates advance it) and counts
``dropped``. Rules are written atomically with ``iptables-legacy-restore
--noflush`` and counters read with ``iptables-legacy-save -c`` (exact, one rule
per line). Every change to a legacy table replaces it whole and the kernel
restarts each nth match from its initial state, so the drop rule is latched
with ``xt_recent`` (``--mask 0.0.0.0``: one entry per fault, whatever the
address) and never fires twice; and installing a fault on a node where another
fault of the run has seen candidates but not dropped yet is refused (it would
restart that fault's count). Install a node's faults before traffic reaches them.

``auto`` (default) probes once per node and run: it creates the nft table and
falls back to xtables on the specific failure of a missing family.

"Carries data" is exact in both backends: IPv4 with header length 5 (no IP
options) and ``total length > 20 + 4 * tcp doff``, IPv6 with TCP as the first
next header (no extension headers) and ``payload length > 4 * tcp doff``, one
rule per data offset (nft: ``ip length``/``ip6 length``; xtables: one ``-m u32``
expression). Rules live in the node's own namespace and are deleted at teardown
(``tb.add_cleanup``); the final counts are kept, so :meth:`Fault.dropped` still
answers after the run.
"""

import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import weakref

from wirelab.errors import CommandError, ConfigError, PreflightError, WirelabError

#: numgen's modulus / nth's period: the counter wraps only after this many packets.
_NUMGEN_MOD = 2**32 - 1
#: Before conntrack (-200) and everything else, after defragmentation (-400).
_PRIORITY = -300
_DIRECTIONS = ("to_server", "to_client")
_NFT_TIMEOUT = 10
_XT_TIMEOUT = 10
#: Seconds iptables-legacy waits for the xtables lock other callers may hold.
_XT_LOCK_WAIT = 5
BACKENDS = ("auto", "nft", "xtables")
#: xtables chain names are at most 28 characters (XT_EXTENSION_MAXNAMELEN - 1).
_XT_CHAIN_MAX = 28
#: Faults per node and run with the xtables backend: suffixes d0..d99 / h0..h99.
_XT_MAX_FAULTS = 100
#: Tables tried in order, with the built-in chains that see every packet the
#: node receives or sends. raw runs before conntrack; the others after it.
_XT_TABLES = (("raw", ("PREROUTING", "OUTPUT")),
              ("mangle", ("PREROUTING", "OUTPUT")),
              ("filter", ("INPUT", "FORWARD", "OUTPUT")))
_XT_TOOLS = {4: ("iptables-legacy-restore", "iptables-legacy-save"),
             6: ("ip6tables-legacy-restore", "ip6tables-legacy-save")}
_XT_ANY = {4: "0.0.0.0", 6: "::"}
# "[packets:bytes] -A chain ..." in iptables-save -c output.
_XT_COUNTED_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+)")


class FaultsUnavailableError(PreflightError):
    """Neither backend can hold the rules here: nf_tables has no inet family
    (e.g. Debian's UML 6.1, built with the bridge family only) and legacy
    xtables is missing too."""


# tb -> {node name: {backend: table, or the error that made it unavailable}}
_TABLES = weakref.WeakKeyDictionary()


def table_name(run_id):
    """nftables table for a run: identifiers may hold letters, digits, _ and -."""
    return f"wl_{run_id}"


def chain_name(run_id):
    """xtables chain jumped to from the hooks; fault chains add ``d<i>``/``h<i>``.

    ``wl_<run id>`` when that leaves room for the suffixes (a Testbed's run id
    does), else ``wl_`` and a digest of the run id."""
    name = table_name(run_id)
    if len(name) + 3 > _XT_CHAIN_MAX:
        name = "wl_" + hashlib.sha256(run_id.encode()).hexdigest()[:_XT_CHAIN_MAX - 6]
    return name


def _first_line(exc):
    lines = exc.stderr.strip().splitlines()
    return lines[0] if lines else str(exc)


def _nft_unavailable(exc):
    return "Operation not supported" in exc.stderr or "No such file or directory" in exc.stderr


class _NftTable:
    """The run's nft table in one node: created on first use, deleted at teardown."""

    backend = "nft"

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
            if _nft_unavailable(exc):
                raise FaultsUnavailableError(
                    f"this kernel's nf_tables has no inet family ({os.uname().release}): "
                    f"{_first_line(exc)}") from exc
            raise
        tb.add_cleanup(f"nft table {self.name} on {node.name}", self.remove)

    def add(self, fault):
        prefix = f"f{len(self.faults)}"
        lines = [f"table inet {self.name} {{",
                 f"  counter {prefix}_matched {{ }}",
                 f"  counter {prefix}_dropped {{ }}",
                 f"  chain {prefix}_hit {{",
                 f'    counter name "{prefix}_matched" numgen inc mod {_NUMGEN_MOD} {fault._nth() - 1}'
                 f' counter name "{prefix}_dropped" drop',
                 "  }",
                 f"  chain {prefix} {{"]
        lines += [f"    {c} goto {prefix}_hit" for c in fault._candidates()]
        lines += ["  }",
                  f"  chain pre {{ meta l4proto tcp{fault._flow()} jump {prefix}; }}",
                  f"  chain out {{ meta l4proto tcp{fault._flow()} jump {prefix}; }}",
                  "}"]
        self.tb.run(self.node, ["nft", "-f", "-"], timeout=_NFT_TIMEOUT, input="\n".join(lines) + "\n")
        self.faults.append(fault)
        return prefix

    def _counters(self):
        """``{counter name: packets}`` read back from the kernel."""
        done = self.tb.run(self.node, ["nft", "-j", "list", "counters", "table", "inet", self.name],
                           timeout=_NFT_TIMEOUT)
        out = {}
        for item in json.loads(done.stdout).get("nftables", []):
            c = item.get("counter")
            if c and c.get("table") == self.name:
                out[c["name"]] = c["packets"]
        return out

    def counts(self):
        """``{fault key: {'matched': n, 'dropped': n}}``."""
        now = self._counters()
        return {f._key: {k: now.get(f"{f._key}_{k}", 0) for k in ("matched", "dropped")}
                for f in self.faults}

    def remove(self):
        """Keep the final counts for each fault, then delete the table."""
        _keep_final(self)
        self.tb.run(self.node, ["nft", "delete", "table", "inet", self.name],
                    timeout=_NFT_TIMEOUT, check=False)
        _forget(self)


def _keep_final(table):
    try:
        final = table.counts()
    except WirelabError:
        final = {}
    for fault in table.faults:
        fault._final = final.get(fault._key, {"matched": 0, "dropped": 0})


def _forget(table):
    tables = _TABLES.get(table.tb, {}).get(table.node.name, {})
    if tables.get(table.backend) is table:
        del tables[table.backend]


class _XtTable:
    """The run's xtables chains in one node, per address family: created on
    first use, deleted at teardown. ``families``: {4 or 6: (table, hooks)}."""

    backend = "xtables"

    def __init__(self, tb, node):
        self.tb, self.node = tb, node
        self.name = chain_name(tb.run_id)
        self.faults = []
        self.families = {}
        self.chains = {}  # family -> fault chains written there, for remove()
        self._registered = False
        self.ensure(4)  # the probe: raises FaultsUnavailableError here, once

    def _restore(self, family, table, lines):
        restore = _XT_TOOLS[family][0]
        text = "\n".join([f"*{table}", *lines, "COMMIT", ""])
        self.tb.run(self.node, [restore, "--noflush", "--wait", str(_XT_LOCK_WAIT)],
                    timeout=_XT_TIMEOUT, input=text)

    def ensure(self, family):
        """Create the run's chain for ``family`` and jump to it first from the hooks."""
        if family in self.families:
            return
        problems = []
        for table, hooks in _XT_TABLES:
            try:
                self._restore(family, table, [f":{self.name} - [0:0]"]
                              + [f"-I {hook} 1 -j {self.name}" for hook in hooks])
            except CommandError as exc:
                problems.append(f"{table}: {_first_line(exc)}")
                if exc.returncode == 127 or "No such file" in exc.stderr:
                    break  # no iptables-legacy: no other table will do better
                continue
            self.families[family] = (table, hooks)
            if not self._registered:
                self.tb.add_cleanup(f"xtables chains {self.name}* on {self.node.name}", self.remove)
                self._registered = True
            return
        raise FaultsUnavailableError(
            f"no legacy xtables table for IPv{family} on {self.node.name} "
            f"({os.uname().release}): {'; '.join(problems)}")

    def add(self, fault):
        i = len(self.faults)
        if i >= _XT_MAX_FAULTS:
            raise ConfigError(f"{fault.describe()}: at most {_XT_MAX_FAULTS} xtables faults "
                              f"per node and run ({self.node.name} has {i})")
        families = fault._families()
        # Rewriting a legacy table restarts every nth match in it: refuse when
        # that would move the drop of a fault that is already counting.
        now = self._read() if self.faults else {}
        for other in self.faults:
            counts = now[other._key]
            if counts["matched"] and not counts["dropped"] and set(other._families()) & set(families):
                raise ConfigError(
                    f"{fault.describe()}: installing it would restart the count of "
                    f"'{other.describe()}' on {self.node.name}, which has seen "
                    f"{counts['matched']} candidates (xtables rewrites the whole table): "
                    "install a node's faults before their traffic starts")
        for family in families:
            self.ensure(family)
        key = f"{self.name}d{i}", f"{self.name}h{i}"
        for family in families:
            table, _ = self.families[family]
            self._restore(family, table, self._fault_rules(fault, family, *key))
            self.chains.setdefault(family, []).extend(key)
        self.faults.append(fault)
        return key

    def _fault_rules(self, fault, family, cand, hit):
        latch = ["-m", "recent", "--name", hit, "--mask", _XT_ANY[family], "--rsource"]
        lines = [f":{cand} - [0:0]", f":{hit} - [0:0]",
                 " ".join(["-A", self.name, "-p", "tcp", *fault._xt_flow(family), "-j", cand])]
        lines += [" ".join(["-A", cand, *c, "-g", hit]) for c in fault._xt_candidates(family)]
        lines += [f"-A {hit}",  # counts every candidate: 'matched'
                  " ".join(["-A", hit, *latch[:2], "!", "--rcheck", *latch[2:],
                            "-m", "statistic", "--mode", "nth", "--every", str(_NUMGEN_MOD),
                            "--packet", str(fault._nth() - 1),
                            *latch[:2], "--set", *latch[2:], "-j", "DROP"])]
        return lines

    def _read(self):
        """``{fault key: {'matched': n, 'dropped': n}}`` summed over the families."""
        per_chain = {}
        for family, (table, _) in self.families.items():
            done = self.tb.run(self.node, [_XT_TOOLS[family][1], "-c", "-t", table],
                               timeout=_XT_TIMEOUT)
            for line in done.stdout.splitlines():
                m = _XT_COUNTED_RULE.match(line)
                if m:
                    per_chain.setdefault((family, m.group(3)), []).append(int(m.group(1)))
        out = {}
        for fault in self.faults:
            _, hit = fault._key
            total = {"matched": 0, "dropped": 0}
            for family in self.families:
                rules = per_chain.get((family, hit))
                if rules:
                    total["matched"] += rules[0]
                    total["dropped"] += rules[1]
            out[fault._key] = total
        return out

    def counts(self):
        return self._read()

    def remove(self):
        """Keep the final counts, then delete the jumps and the chains."""
        _keep_final(self)
        errors = []
        for family, (table, hooks) in self.families.items():
            chains = [self.name] + self.chains.get(family, [])
            try:
                self._restore(family, table, [f"-D {hook} -j {self.name}" for hook in hooks]
                              + [f"-F {c}" for c in chains] + [f"-X {c}" for c in chains])
            except CommandError as exc:
                errors.append(exc)
        self.families.clear()
        self.chains.clear()
        _forget(self)
        if errors:
            raise errors[0]


_BACKEND_CLASSES = {"nft": _NftTable, "xtables": _XtTable}


def _table_for(tb, node, backend):
    """The node's table for ``backend``, created (and for 'auto', probed) once."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}: one of {', '.join(BACKENDS)}")
    tables = _TABLES.setdefault(tb, {}).setdefault(node.name, {})
    if backend == "auto":
        for name in ("nft", "xtables"):
            if isinstance(tables.get(name), (_NftTable, _XtTable)):
                return tables[name]
        order = [name for name in ("nft", "xtables") if name not in tables]
        if not order:
            raise FaultsUnavailableError(
                f"no fault backend on {node.name}: "
                + "; ".join(f"{k}: {v}" for k, v in tables.items()))
        for name in order:
            try:
                tables[name] = _BACKEND_CLASSES[name](tb, node)
                return tables[name]
            except FaultsUnavailableError as exc:
                tables[name] = exc  # probed once: not again for this node and run
        raise FaultsUnavailableError(
            f"no fault backend on {node.name}: "
            + "; ".join(f"{k}: {v}" for k, v in tables.items()))
    table = tables.get(backend)
    if isinstance(table, FaultsUnavailableError):
        raise table
    if table is None:
        table = tables[backend] = _BACKEND_CLASSES[backend](tb, node)
    return table


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
        self._key = None
        self._final = None

    # subclasses: the candidate filter inside the fault's chain, the flow
    # match for the hook chains (nft text; xtables argv per address family),
    # and which candidate (1-based) to drop.
    def _candidates(self):
        raise NotImplementedError

    def _flow(self):
        raise NotImplementedError

    def _xt_candidates(self, family):
        raise NotImplementedError

    def _xt_ports(self):
        raise NotImplementedError

    def _nth(self):
        return 1

    def describe(self):
        raise NotImplementedError

    def _families(self):
        """Address families the fault can see: those of ``src``/``dst``, else both."""
        versions = {ipaddress.ip_address(a).version for a in (self.src, self.dst) if a is not None}
        if len(versions) > 1:
            raise ConfigError(f"src={self.src!r}, dst={self.dst!r}: one address family, not both")
        return tuple(sorted(versions)) or (4, 6)

    def _xt_flow(self, family):
        args = list(self._xt_ports())
        for flag, addr in (("-s", self.src), ("-d", self.dst)):
            if addr is not None:
                args += [flag, str(ipaddress.ip_address(addr))]
        return args

    @property
    def backend(self):
        """'nft' or 'xtables' once installed, else None."""
        return self._table.backend if self._table is not None else None

    def install(self, tb, node, backend="auto"):
        """Put the rules into ``node``'s namespace; removed at ``tb`` teardown.

        ``backend``: 'nft', 'xtables', or 'auto' (nft where nf_tables has the
        inet family, else xtables; probed once per node and run)."""
        if self._table is not None:
            raise ConfigError(f"{self.describe()}: already installed on {self._table.node.name}")
        node = tb.resolve(node)
        table = _table_for(tb, node, backend)
        key = table.add(self)
        self._table, self._key = table, key
        return self

    def counts(self):
        """``{'matched': candidates seen, 'dropped': packets dropped}``."""
        if self._table is None:
            raise ConfigError(f"{self.describe()}: not installed")
        if self._final is not None:
            return dict(self._final)
        return self._table.counts()[self._key]

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
        self._families()

    def _candidates(self):
        return _DATA_CANDIDATES

    def _xt_candidates(self, family):
        return _XT_DATA_CANDIDATES[family]

    def _xt_ports(self):
        return _xt_port(self.direction, self.dport)

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
        self._families()

    def _candidates(self):
        return ("tcp flags & (syn | ack) == syn | ack",)

    def _xt_candidates(self, family):
        return _XT_SYNACK

    def _xt_ports(self):
        return ["-m", "tcp", "--sport", str(self.dport)] if self.dport is not None else []

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
        self._families()

    def _candidates(self):
        return ("tcp flags & fin == fin",)

    def _xt_candidates(self, family):
        return _XT_FIN

    def _xt_ports(self):
        return _xt_port(self.direction, self.dport)

    def _flow(self):
        return _flow_match(self.direction, self.dport, self.src, self.dst)

    def describe(self):
        return f"drop the first FIN {self.direction.replace('_', ' ')} port {self.dport}"
