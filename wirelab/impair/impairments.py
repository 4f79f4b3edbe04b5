"""The impairments of one Testbed: its live netem and fault handles.

A :class:`~wirelab.net.testbed.Testbed` owns one :class:`Impairments`
(``tb.impairments``); ``tb.apply_netem`` and ``tb.install_fault`` create handles
through it, each handle's :meth:`remove` deregisters it, and the Testbed's
teardown removes every handle still live, before the nodes stop (also on an
exception or a signal). Nothing is kept at module level: two Testbeds never
see each other's handles.

Faults of one node share one rule table per backend (an nft table, or the
xtables chains of the run): created with its first fault, deleted when its last
fault goes or at teardown. ``backend="auto"`` (the default) probes once per
node: it creates the nft table and falls back to xtables on the specific failure
of a missing inet family; what failed is remembered for that node.
"""

import dataclasses
from collections.abc import Mapping

from wirelab.errors import ConfigError, WirelabError
from wirelab.impair.faults import Fault, FaultsUnavailableError
from wirelab.impair.nft import NftTable
from wirelab.impair.qdisc import NetemHandle, interface_name
from wirelab.impair.spec import NetemSpec
from wirelab.impair.xtables import XtTable

BACKENDS = ("auto", "nft", "xtables")
_TABLE_CLASSES = {"nft": NftTable, "xtables": XtTable}
_COUNTS = ("matched", "dropped")


class FaultHandle:
    """One fault installed in one node: its rules, its counts, its removal.

    ``fault`` (the :class:`~wirelab.impair.faults.Fault`), ``node``, ``backend``
    ('nft' or 'xtables'). After :meth:`remove` (or teardown) :meth:`counters`
    gives the counts read just before the rules went."""

    kind = "fault"

    def __init__(self, owner, fault, node, table, key):
        self.fault, self.node = fault, node
        self._owner, self._table, self._key = owner, table, key
        self._final = None

    @property
    def backend(self):
        return self._table.backend

    @property
    def removed(self):
        return self._final is not None

    def counters(self):
        """``{'matched': candidates seen, 'dropped': packets dropped}``."""
        if self._final is not None:
            return dict(self._final)
        return self._table.counts()[self._key]

    def remove(self):
        """Delete this fault's rules and deregister. Idempotent: True if this
        call removed it, False if it was already gone."""
        if self._final is not None:
            return False
        final = self.counters()
        self._table.remove_fault(self._key)
        self._final = final
        self._owner._forget(self)
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def describe(self):
        return (f"{self.fault.describe()} on {self.node.name} ({self.backend})"
                + (" [removed]" if self.removed else ""))

    def to_dict(self):
        """JSON-ready: the fault asked for, where, which backend, the counts."""
        try:
            counters = self.counters()
        except WirelabError:
            counters = None
        return {"kind": self.kind, "type": type(self.fault).__name__,
                "fault": dataclasses.asdict(self.fault), "text": self.fault.describe(),
                "node": self.node.name, "backend": self.backend, "counters": counters,
                "removed": self.removed}

    def __repr__(self):
        return f"<FaultHandle {self.describe()}>"


class Impairments:
    """A Testbed's live impairment handles, in the order they were made."""

    def __init__(self, tb):
        self._tb = tb
        self._live = []
        # node name -> {backend: table, or the FaultsUnavailableError it raised}
        self._tables = {}

    # -- what is live
    def __iter__(self):
        return iter(list(self._live))

    def __len__(self):
        return len(self._live)

    def describe(self):
        """One line per live handle."""
        return [h.describe() for h in self._live]

    def to_dict(self):
        return [h.to_dict() for h in self._live]

    def _forget(self, handle):
        if handle in self._live:
            self._live.remove(handle)
        if handle.kind == "fault":
            table = handle._table
            if not table.keys:   # its last fault: the table goes too
                table.remove()
                tables = self._tables.get(handle.node.name, {})
                if tables.get(table.backend) is table:
                    del tables[table.backend]

    # -- netem
    def apply_netem(self, node, intf, spec):
        """See :meth:`Testbed.apply_netem <wirelab.net.testbed.Testbed.apply_netem>`."""
        if isinstance(spec, Mapping):
            spec = NetemSpec.from_kwargs(spec)
        elif isinstance(spec, str):
            spec = NetemSpec.parse(spec)
        elif not isinstance(spec, NetemSpec):
            raise ConfigError(f"apply_netem needs a NetemSpec or its keywords, "
                              f"got {type(spec).__name__}")
        node = self._tb.resolve(node)
        ifname = interface_name(node, intf)
        for h in self._live:
            if h.kind == "netem" and h.node is node and h.intf == ifname:
                raise ConfigError(f"{node.name}:{ifname} already has netem from this run "
                                  "(change it with handle.change(spec))")
        handle = NetemHandle(node, ifname, spec, on_remove=self._forget)
        # Registered before the add, so an interrupted add is still undone.
        self._live.append(handle)
        try:
            handle.install()
        except BaseException:
            self._undo(handle)
            raise
        return handle

    def _undo(self, handle):
        try:
            handle.remove()
        except Exception:  # noqa: BLE001  (the first error is the one to show)
            pass   # still live: teardown tries again

    # -- faults
    def install_fault(self, node, fault, backend="auto"):
        """See :meth:`Testbed.install_fault <wirelab.net.testbed.Testbed.install_fault>`."""
        if not isinstance(fault, Fault):
            raise ConfigError(f"install_fault needs a Fault, got {type(fault).__name__}")
        node = self._tb.resolve(node)
        table = self._table_for(node, backend)
        key = table.add(fault)
        handle = FaultHandle(self, fault, node, table, key)
        self._live.append(handle)
        return handle

    def _table_for(self, node, backend):
        """The node's table for ``backend``, created (and for 'auto', probed) once."""
        if backend not in BACKENDS:
            raise ConfigError(f"backend={backend!r}: one of {', '.join(BACKENDS)}")
        tables = self._tables.setdefault(node.name, {})
        order = ("nft", "xtables") if backend == "auto" else (backend,)
        for name in order:
            if not isinstance(tables.get(name), FaultsUnavailableError) and name in tables:
                return tables[name]
        for name in order:
            if name in tables:
                continue  # probed before: unavailable
            try:
                tables[name] = _TABLE_CLASSES[name](node, self._tb.run_id)
                return tables[name]
            except FaultsUnavailableError as exc:
                tables[name] = exc
        if backend != "auto":
            raise tables[backend]
        raise FaultsUnavailableError(
            f"no fault backend on {node.name}: "
            + "; ".join(f"{k}: {v}" for k, v in tables.items()))

    # -- teardown
    def remove_all(self):
        """Remove every live handle, newest first; returns one line per problem.

        Fault tables go whole (their final counts kept first): removing faults one
        by one could restart the count of another in xtables."""
        errors = []
        for handle in reversed(list(self._live)):
            if handle.removed:
                continue
            try:
                if handle.kind == "fault":
                    self._remove_table(handle._table)
                else:
                    handle.remove()
            except OSError:
                # The node's namespace is gone, and the qdisc with it.
                if handle.kind == "netem":
                    handle.forget_gone()
            except Exception as exc:  # keep going: the rest must still go
                errors.append(f"{handle.describe()}: {exc}")
        self._live.clear()
        return errors

    def _remove_table(self, table):
        handles = [h for h in self._live if h.kind == "fault" and h._table is table]
        try:
            counts = table.counts()
        except WirelabError:
            counts = {}
        for h in handles:
            h._final = counts.get(h._key, {k: 0 for k in _COUNTS})
            self._live.remove(h)
        for tables in self._tables.values():
            if tables.get(table.backend) is table:
                del tables[table.backend]
        table.remove()
