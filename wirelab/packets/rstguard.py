"""Keep the local kernel from resetting a TCP connection it does not know.

A connection made by hand (scapy) has no socket in the kernel, so the kernel
answers the server's SYN-ACK -- and every later segment -- with a RST. An
:class:`RstGuard` drops exactly those RSTs, for one flow, in the output hook::

    table inet wirelab_hs_<pid> {            # owned by this process
      chain out {
        type filter hook output priority 0; policy accept;
        ip saddr S ip daddr D tcp sport SP tcp dport DP tcp flags & rst == rst counter drop
      }
    }

Created before the SYN, deleted on exit (also on exception and signal: the
caller runs :meth:`RstGuard.remove` in ``finally``) and read back to prove it
is gone. Where nf_tables has no inet family (Debian's UML 6.1 kernel), the same
rule goes into a legacy xtables chain ``wirelab_hs_<pid>`` jumped to first from
``OUTPUT``. Packets scapy sends through a packet socket never pass the output
hook, so the guard cannot drop a RST the tool itself sends.
"""

import dataclasses
import ipaddress
import json
import os

from wirelab.errors import CommandError, ConfigError, PreflightError, WirelabError
from wirelab.proc import run

_TIMEOUT = 10
#: Seconds iptables-legacy waits for the xtables lock other callers may hold.
_LOCK_WAIT = 5
#: Legacy tables tried in order (raw is before conntrack; filter always exists).
_XT_TABLES = ("raw", "filter")
BACKENDS = ("auto", "nft", "iptables")


class RstGuardUnavailable(PreflightError):
    """Neither nf_tables (inet family) nor legacy xtables can hold the rule."""


class RstGuardLeft(WirelabError):
    """The guard's table or chain is still there after it was deleted."""

    exit_code = 6


@dataclasses.dataclass(frozen=True)
class Flow:
    """The hand-made connection's 4-tuple, from the client's side (IPv4)."""

    src: str
    sport: int
    dst: str
    dport: int

    def __post_init__(self):
        for addr in (self.src, self.dst):
            if ipaddress.ip_address(addr).version != 4:
                raise ConfigError(f"{addr}: the RST guard handles IPv4 flows only")


def guard_name(pid=None):
    """The table (nft) or chain (xtables) of process ``pid``: at most 28 characters."""
    return f"wirelab_hs_{os.getpid() if pid is None else pid}"


def nft_rule(flow):
    """The nft rule (inside a chain) that drops the kernel's RSTs of ``flow``."""
    return (f"ip saddr {flow.src} ip daddr {flow.dst} tcp sport {flow.sport} "
            f"tcp dport {flow.dport} tcp flags & rst == rst counter drop")


def nft_script(name, flow):
    """``nft -f -`` input creating the guard's table for ``flow``."""
    return (f"table inet {name} {{\n"
            f"  chain out {{\n"
            f"    type filter hook output priority 0; policy accept;\n"
            f"    {nft_rule(flow)}\n"
            f"  }}\n"
            f"}}\n")


def xt_rule(flow):
    """The same rule as iptables arguments (after ``-A <chain>``)."""
    return ["-p", "tcp", "-s", flow.src, "-d", flow.dst, "-m", "tcp", "--sport", str(flow.sport),
            "--dport", str(flow.dport), "--tcp-flags", "RST", "RST", "-j", "DROP"]


def _first_line(exc):
    lines = exc.stderr.strip().splitlines()
    return lines[0] if lines else str(exc)


class RstGuard:
    """The rule for one flow, in this process's namespace. ``backend``: 'auto'
    (nft, else iptables-legacy), 'nft' or 'iptables'. ``runner(argv, input)``
    runs a command (tests pass a fake); it must raise CommandError on failure."""

    def __init__(self, flow, backend="auto", name=None, runner=None):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: one of {', '.join(BACKENDS)}")
        self.flow = flow
        self.name = name or guard_name()
        self.wanted = backend
        self.backend = None       # set once the rule is in the kernel
        self.xt_table = None
        self.removed = False
        self.suppressed = None    # RSTs dropped, read before removal
        self._run = runner or (lambda argv, input=None: run(None, argv, _TIMEOUT, input=input))

    # -- install ---------------------------------------------------------------
    def install(self):
        problems = []
        if self.wanted in ("auto", "nft"):
            try:
                self._run(["nft", "-f", "-"], input=nft_script(self.name, self.flow))
                self.backend = "nft"
                return self
            except CommandError as exc:
                problems.append(f"nft: {_first_line(exc)}")
        if self.wanted in ("auto", "iptables"):
            for table in _XT_TABLES:
                try:
                    self._xt_restore(table, [f":{self.name} - [0:0]",
                                             f"-A {self.name} " + " ".join(xt_rule(self.flow)),
                                             f"-I OUTPUT 1 -j {self.name}"])
                    self.backend, self.xt_table = "iptables", table
                    return self
                except CommandError as exc:
                    problems.append(f"iptables-legacy {table}: {_first_line(exc)}")
                    if exc.returncode == 127:
                        break
        raise RstGuardUnavailable(f"cannot suppress the kernel's RST ({os.uname().release}): "
                                  + "; ".join(problems))

    def _xt_restore(self, table, lines):
        text = "\n".join([f"*{table}", *lines, "COMMIT", ""])
        self._run(["iptables-legacy-restore", "--noflush", "--wait", str(_LOCK_WAIT)], input=text)

    # -- read back -------------------------------------------------------------
    def present(self):
        """Whether the guard's table (nft) or chain (xtables) is in the kernel."""
        if self.backend == "iptables":
            out = self._run(["iptables-legacy-save", "-t", self.xt_table]).stdout
            return any(line.split()[:1] == [f":{self.name}"] for line in out.splitlines())
        out = self._run(["nft", "-j", "list", "tables"]).stdout
        return any(item.get("table", {}).get("name") == self.name
                   for item in json.loads(out).get("nftables", []))

    def count(self):
        """RSTs the rule dropped so far."""
        if self.backend == "iptables":
            out = self._run(["iptables-legacy", "-w", str(_LOCK_WAIT), "-t", self.xt_table,
                             "-L", self.name, "-nvx"]).stdout
            rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
            return sum(int(r[0]) for r in rows)
        out = self._run(["nft", "-j", "list", "table", "inet", self.name]).stdout
        return sum(expr["counter"]["packets"]
                   for item in json.loads(out).get("nftables", []) if "rule" in item
                   for expr in item["rule"]["expr"] if "counter" in expr)

    # -- remove ----------------------------------------------------------------
    def remove(self):
        """Delete the table or chain, then check it is gone (RstGuardLeft if not).
        Idempotent; a guard whose install failed has nothing to remove."""
        if self.backend is None or self.removed:
            return
        try:
            self.suppressed = self.count()
        except (CommandError, ValueError, KeyError):
            self.suppressed = None   # the count is a report; the removal matters
        try:
            if self.backend == "nft":
                self._run(["nft", "delete", "table", "inet", self.name])
            else:
                self._xt_restore(self.xt_table, [f"-D OUTPUT -j {self.name}", f"-F {self.name}",
                                                 f"-X {self.name}"])
        except CommandError as exc:
            if self.present():
                raise RstGuardLeft(f"could not delete {self.describe()}: {_first_line(exc)}") from exc
        if self.present():
            raise RstGuardLeft(f"{self.describe()} is still there after it was deleted")
        self.removed = True

    def describe(self):
        if self.backend == "iptables":
            return f"iptables-legacy chain {self.name} (table {self.xt_table})"
        return f"nft table inet {self.name}"

    def to_dict(self):
        rule = (f"-t {self.xt_table} -A {self.name} " + " ".join(xt_rule(self.flow))
                if self.backend == "iptables" else nft_rule(self.flow))
        return {"backend": self.backend, "name": self.name, "rule": rule,
                "rsts_suppressed": self.suppressed, "removed": self.removed}
