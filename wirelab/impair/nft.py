"""The nftables backend of the targeted faults: one table per (run, node).

``inet wl_<run id>`` in the node's own namespace, chains at priority -300
(before conntrack, after defragmentation), written with ``nft -f -`` and read
back as JSON (``nft -j``). Each fault ``f<i>`` gets a candidate chain, a hit
chain, two named counters and a jump from each hook chain; the hit chain's rule
is ``numgen inc mod 2**32-1 == N-1 drop``: ``numgen inc`` is a per-rule counter
the kernel increments atomically each time the rule is evaluated, so only the
N-th candidate is dropped, once (until 4 billion more packets wrap it).
A fault whose ``nth_candidate()`` is None (``DropIcmpFragNeeded``) drops every
candidate: its hit chain only counts and drops, no numgen. The hook chains jump
on the fault's transport protocol (``nft_l4proto()``: tcp, or ICMP for that one).
Removing one fault deletes only its rules (by handle), chains and counters;
adding or removing one never disturbs another's count.
"""

import json
import os

from wirelab.errors import CommandError, WirelabError
from wirelab.impair.faults import NUMGEN_MOD, FaultsUnavailableError
from wirelab.proc import run

#: Before conntrack (-200) and everything else, after defragmentation (-400).
PRIORITY = -300
_TIMEOUT = 10
_COUNTS = ("matched", "dropped")


def table_name(run_id):
    """nftables table for a run: identifiers may hold letters, digits, _ and -."""
    return f"wl_{run_id}"


def first_line(exc):
    """The first line of a CommandError's stderr (or the error itself)."""
    lines = exc.stderr.strip().splitlines()
    return lines[0] if lines else str(exc)


def _unavailable(exc):
    return "Operation not supported" in exc.stderr or "No such file or directory" in exc.stderr


class NftTable:
    """The run's nft table in one node: created here, deleted by :meth:`remove`.

    Raises :class:`FaultsUnavailableError` if this kernel's nf_tables has no
    inet family. ``keys``: the faults it holds, by key (``f<i>``)."""

    backend = "nft"

    def __init__(self, node, run_id):
        self.node = node
        self.name = table_name(run_id)
        self.keys = []
        self._next = 0
        try:
            self._nft(["-f", "-"], input=(
                f"table inet {self.name} {{\n"
                f"  chain pre {{ type filter hook prerouting priority {PRIORITY}; policy accept; }}\n"
                f"  chain out {{ type filter hook output priority {PRIORITY}; policy accept; }}\n"
                "}\n"))
        except CommandError as exc:
            if _unavailable(exc):
                raise FaultsUnavailableError(
                    f"this kernel's nf_tables has no inet family ({os.uname().release}): "
                    f"{first_line(exc)}") from exc
            raise

    def _nft(self, args, input=None, check=True):
        return run(self.node, ["nft", *args], timeout=_TIMEOUT, input=input, check=check)

    def add(self, fault):
        """Write ``fault``'s rules; returns its key."""
        key = f"f{self._next}"
        nth = fault.nth_candidate()
        # None: every candidate is dropped, no numgen.
        pick = "" if nth is None else f"numgen inc mod {NUMGEN_MOD} {nth - 1} "
        lines = [f"table inet {self.name} {{",
                 f"  counter {key}_matched {{ }}",
                 f"  counter {key}_dropped {{ }}",
                 f"  chain {key}_hit {{",
                 f'    counter name "{key}_matched" {pick}counter name "{key}_dropped" drop',
                 "  }",
                 f"  chain {key} {{"]
        lines += [f"    {c} goto {key}_hit" for c in fault.nft_candidates()]
        lines += ["  }",
                  f"  chain pre {{ meta l4proto {fault.nft_l4proto()}{fault.nft_flow()} jump {key}; }}",
                  f"  chain out {{ meta l4proto {fault.nft_l4proto()}{fault.nft_flow()} jump {key}; }}",
                  "}"]
        self._nft(["-f", "-"], input="\n".join(lines) + "\n")
        self._next += 1
        self.keys.append(key)
        return key

    def counts(self):
        """``{key: {'matched': n, 'dropped': n}}`` read back from the kernel."""
        done = self._nft(["-j", "list", "counters", "table", "inet", self.name])
        now = {}
        for item in json.loads(done.stdout).get("nftables", []):
            c = item.get("counter")
            if c and c.get("table") == self.name:
                now[c["name"]] = c["packets"]
        return {key: {k: now.get(f"{key}_{k}", 0) for k in _COUNTS} for key in self.keys}

    def _jump_handles(self, key):
        """Handles of the hook chains' rules that jump to ``key``: {chain: [handle]}."""
        out = {}
        for chain in ("pre", "out"):
            done = self._nft(["-j", "-a", "list", "chain", "inet", self.name, chain])
            for item in json.loads(done.stdout).get("nftables", []):
                rule = item.get("rule")
                if rule and any(e.get("jump", {}).get("target") == key for e in rule["expr"]):
                    out.setdefault(chain, []).append(rule["handle"])
        return out

    def remove_fault(self, key):
        """Delete one fault's jumps, chains and counters, in one transaction."""
        lines = [f"delete rule inet {self.name} {chain} handle {h}"
                 for chain, handles in self._jump_handles(key).items() for h in handles]
        lines += [f"flush chain inet {self.name} {key}", f"flush chain inet {self.name} {key}_hit",
                  f"delete chain inet {self.name} {key}", f"delete chain inet {self.name} {key}_hit",
                  f"delete counter inet {self.name} {key}_matched",
                  f"delete counter inet {self.name} {key}_dropped"]
        self._nft(["-f", "-"], input="\n".join(lines) + "\n")
        self.keys.remove(key)

    def remove(self):
        """Delete the whole table (every fault in it)."""
        done = self._nft(["delete", "table", "inet", self.name], check=False)
        self.keys.clear()
        if done.returncode != 0 and "No such file" not in done.stderr:
            raise WirelabError(f"nft delete table inet {self.name} on {self.node.name} "
                               f"exited {done.returncode}: {done.stderr.strip()}")
