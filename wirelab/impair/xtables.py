"""The legacy-xtables backend of the targeted faults, for kernels whose
nf_tables cannot hold an inet table (e.g. Debian's UML 6.1).

``iptables-legacy`` / ``ip6tables-legacy``: a chain ``wl_<run id>`` in the
``raw`` table jumped to first from PREROUTING and OUTPUT (``mangle``, or
``filter`` INPUT/FORWARD/OUTPUT, if the kernel has no raw table), and per fault
a candidate chain ``...d<i>`` and a hit chain ``...h<i>``. The hit chain's first
rule only counts (``matched``); its second drops ``-m statistic --mode nth
--every 4294967295 --packet N-1`` (the N-th packet that reaches the match: it is
the last test before the latch, so only candidates advance it) and counts
``dropped``. Rules are written atomically with ``iptables-legacy-restore
--noflush`` and counters read with ``iptables-legacy-save -c`` (exact, one rule
per line).

Every change to a legacy table replaces it whole and the kernel restarts each
nth match from its initial state, so the drop rule is latched with ``xt_recent``
(``--mask 0.0.0.0``: one entry per fault, whatever the address) and never fires
twice; and adding or removing a fault on a node where another fault has seen
candidates but not dropped yet is refused (it would restart that fault's count).
Install a node's faults before traffic reaches them.

A fault that drops every candidate (``nth_candidate()`` None) has a plain
``-j DROP`` second rule: no nth match, no latch.
"""

import hashlib
import os
import re

from wirelab.errors import CommandError, ConfigError
from wirelab.impair.faults import NUMGEN_MOD, FaultsUnavailableError
from wirelab.impair.nft import first_line, table_name
from wirelab.proc import run

_TIMEOUT = 10
#: Seconds iptables-legacy waits for the xtables lock other callers may hold.
_LOCK_WAIT = 5
#: xtables chain names are at most 28 characters (XT_EXTENSION_MAXNAMELEN - 1).
_CHAIN_MAX = 28
#: Faults per node and run: suffixes d0..d99 / h0..h99.
MAX_FAULTS = 100
#: Tables tried in order, with the built-in chains that see every packet the
#: node receives or sends. raw runs before conntrack; the others after it.
_HOOK_TABLES = (("raw", ("PREROUTING", "OUTPUT")),
           ("mangle", ("PREROUTING", "OUTPUT")),
           ("filter", ("INPUT", "FORWARD", "OUTPUT")))
_TOOLS = {4: ("iptables-legacy-restore", "iptables-legacy-save"),
          6: ("ip6tables-legacy-restore", "ip6tables-legacy-save")}
_ANY = {4: "0.0.0.0", 6: "::"}
# "[packets:bytes] -A chain ..." in iptables-save -c output.
_COUNTED_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+)")


def chain_name(run_id):
    """xtables chain jumped to from the hooks; fault chains add ``d<i>``/``h<i>``.

    ``wl_<run id>`` when that leaves room for the suffixes (a Testbed's run id
    does), else ``wl_`` and a digest of the run id."""
    name = table_name(run_id)
    if len(name) + 3 > _CHAIN_MAX:
        name = "wl_" + hashlib.sha256(run_id.encode()).hexdigest()[:_CHAIN_MAX - 6]
    return name


class XtTable:
    """The run's xtables chains in one node, per address family: created here
    (IPv4 at once, as the probe; IPv6 on first use), deleted by :meth:`remove`.

    ``keys``: the faults it holds, by key (candidate chain, hit chain)."""

    backend = "xtables"

    def __init__(self, node, run_id):
        self.node = node
        self.name = chain_name(run_id)
        self.keys = []
        self._faults = {}     # key -> fault
        self._next = 0
        self.families = {}    # 4 or 6 -> (table, hooks)
        self.ensure(4)        # the probe: raises FaultsUnavailableError here, once

    def _restore(self, family, table, lines):
        text = "\n".join([f"*{table}", *lines, "COMMIT", ""])
        run(self.node, [_TOOLS[family][0], "--noflush", "--wait", str(_LOCK_WAIT)],
            timeout=_TIMEOUT, input=text)

    def ensure(self, family):
        """Create the run's chain for ``family`` and jump to it first from the hooks."""
        if family in self.families:
            return
        problems = []
        for table, hooks in _HOOK_TABLES:
            try:
                self._restore(family, table, [f":{self.name} - [0:0]"]
                              + [f"-I {hook} 1 -j {self.name}" for hook in hooks])
            except CommandError as exc:
                problems.append(f"{table}: {first_line(exc)}")
                if exc.returncode == 127 or "No such file" in exc.stderr:
                    break  # no iptables-legacy: no other table will do better
                continue
            self.families[family] = (table, hooks)
            return
        raise FaultsUnavailableError(
            f"no legacy xtables table for IPv{family} on {self.node.name} "
            f"({os.uname().release}): {'; '.join(problems)}")

    def _refuse_restart(self, fault, families, action):
        """A rewrite restarts every nth match: refuse when that would move the
        drop of another fault that is already counting."""
        now = self.counts()
        for key, other in self._faults.items():
            counts = now[key]
            if other is not fault and counts["matched"] and not counts["dropped"] \
                    and set(other.families()) & set(families):
                raise ConfigError(
                    f"{action} '{fault.describe()}' would restart the count of "
                    f"'{other.describe()}' on {self.node.name}, which has seen "
                    f"{counts['matched']} candidates (xtables rewrites the whole table): "
                    "install a node's faults before their traffic starts")

    def add(self, fault):
        """Write ``fault``'s chains and rules; returns its key."""
        if len(self.keys) >= MAX_FAULTS or self._next >= MAX_FAULTS:
            raise ConfigError(f"{fault.describe()}: at most {MAX_FAULTS} xtables faults "
                              f"per node and run on {self.node.name}")
        families = fault.families()
        if self.keys:
            self._refuse_restart(fault, families, "installing")
        for family in families:
            self.ensure(family)
        key = f"{self.name}d{self._next}", f"{self.name}h{self._next}"
        for family in families:
            self._restore(family, self.families[family][0], self._fault_rules(fault, family, *key))
        self._next += 1
        self.keys.append(key)
        self._faults[key] = fault
        return key

    def _jump(self, fault, family, cand):
        return ["-p", fault.xt_l4proto(family), *fault.xt_flow(family), "-j", cand]

    def _fault_rules(self, fault, family, cand, hit):
        latch = ["-m", "recent", "--name", hit, "--mask", _ANY[family], "--rsource"]
        lines = [f":{cand} - [0:0]", f":{hit} - [0:0]",
                 " ".join(["-A", self.name, *self._jump(fault, family, cand)])]
        lines += [" ".join(["-A", cand, *c, "-g", hit]) for c in fault.xt_candidates(family)]
        if fault.nth_candidate() is None:   # every candidate: no nth match, no latch
            return lines + [f"-A {hit}", f"-A {hit} -j DROP"]
        lines += [f"-A {hit}",  # counts every candidate: 'matched'
                  " ".join(["-A", hit, *latch[:2], "!", "--rcheck", *latch[2:],
                            "-m", "statistic", "--mode", "nth", "--every", str(NUMGEN_MOD),
                            "--packet", str(fault.nth_candidate() - 1),
                            *latch[:2], "--set", *latch[2:], "-j", "DROP"])]
        return lines

    def counts(self):
        """``{key: {'matched': n, 'dropped': n}}`` summed over the families."""
        per_chain = {}
        for family, (table, _) in self.families.items():
            done = run(self.node, [_TOOLS[family][1], "-c", "-t", table], timeout=_TIMEOUT)
            for line in done.stdout.splitlines():
                m = _COUNTED_RULE.match(line)
                if m:
                    per_chain.setdefault((family, m.group(3)), []).append(int(m.group(1)))
        out = {}
        for key in self.keys:
            total = {"matched": 0, "dropped": 0}
            for family in self.families:
                rules = per_chain.get((family, key[1]))
                if rules:
                    total["matched"] += rules[0]
                    total["dropped"] += rules[1]
            out[key] = total
        return out

    def remove_fault(self, key):
        """Delete one fault's jump and chains (refused if it would restart another)."""
        fault = self._faults[key]
        families = [f for f in fault.families() if f in self.families]
        self._refuse_restart(fault, families, "removing")
        cand, hit = key
        for family in families:
            self._restore(family, self.families[family][0],
                          [" ".join(["-D", self.name, *self._jump(fault, family, cand)]),
                           f"-F {cand}", f"-F {hit}", f"-X {cand}", f"-X {hit}"])
        self.keys.remove(key)
        del self._faults[key]

    def remove(self):
        """Delete the jumps from the hooks and every chain of the run."""
        errors = []
        for family, (table, hooks) in self.families.items():
            chains = [self.name] + [c for key in self.keys for c in key
                                    if family in self._faults[key].families()]
            try:
                self._restore(family, table, [f"-D {hook} -j {self.name}" for hook in hooks]
                              + [f"-F {c}" for c in chains] + [f"-X {c}" for c in chains])
            except CommandError as exc:
                errors.append(exc)
        self.families.clear()
        self.keys.clear()
        self._faults.clear()
        if errors:
            raise errors[0]
