"""Impairment handles without root: owned by their Testbed, removed once, and no
state at module level (two Testbeds at once keep separate handles).

The kernel is replaced by fakes here (a NetemHandle that never adds a qdisc, a
rule table that counts in memory); the same lifecycle against a real kernel is
in tests/integration/test_netem_live.py and test_faults.py.
"""

import json
import weakref

import pytest

import wirelab.impair
from wirelab.errors import ConfigError
from wirelab.impair import faults, impairments, qdisc
from wirelab.impair.faults import DropSynAck, FaultsUnavailableError
from wirelab.impair.spec import NetemSpec
from wirelab.net.testbed import Testbed


class FakeIntf:
    link = None


class FakeNode:
    def __init__(self, name):
        self.name = name

    def intfNames(self):
        return ["lo", f"{self.name}-eth0"]

    def intf(self, _name):
        return FakeIntf()


class FakeTable:
    """A rule table in memory; ``made`` records every table created."""

    backend = "nft"
    made = []

    def __init__(self, node, run_id):
        self.node, self.run_id, self.keys, self.removed = node, run_id, [], False
        self.hits = {}
        FakeTable.made.append(self)

    def add(self, fault):
        key = f"f{len(self.hits)}"
        self.keys.append(key)
        self.hits[key] = {"matched": 0, "dropped": 0}
        return key

    def counts(self):
        return {k: dict(self.hits[k]) for k in self.keys}

    def remove_fault(self, key):
        self.keys.remove(key)

    def remove(self):
        self.removed = True
        self.keys.clear()


class NoNft:
    backend = "nft"

    def __init__(self, node, run_id):
        NoNft.probes += 1
        raise FaultsUnavailableError("no inet family")


@pytest.fixture
def fake_kernel(monkeypatch):
    monkeypatch.setattr(qdisc.NetemHandle, "install", lambda self: self)
    FakeTable.made = []
    monkeypatch.setitem(impairments._TABLE_CLASSES, "nft", FakeTable)
    monkeypatch.setitem(impairments._TABLE_CLASSES, "xtables", FakeTable)


def make_testbed(run_id):
    tb = Testbed(topo=None)
    tb.run_id = run_id
    tb.resolve = lambda node: FakeNode(node) if isinstance(node, str) else node
    return tb


def test_two_testbeds_keep_separate_handles(fake_kernel):
    a, b = make_testbed("run-a"), make_testbed("run-b")
    r1 = FakeNode("r1")
    ha = a.apply_netem(r1, "r1-eth0", {"delay": "10ms"})
    hb = b.apply_netem(r1, "r1-eth0", NetemSpec(delay=20))   # same interface, other run
    assert list(a.impairments) == [ha] and list(b.impairments) == [hb]
    assert ha.spec == NetemSpec(delay=10)
    with pytest.raises(ConfigError, match="already has netem"):
        a.apply_netem(r1, "r1-eth0", NetemSpec(delay=30))
    fa = a.install_fault(r1, DropSynAck(dport=80))
    fb = b.install_fault(r1, DropSynAck(dport=80))
    assert [t.run_id for t in FakeTable.made] == ["run-a", "run-b"]   # one table each
    assert fa._table is not fb._table
    assert a.impairments.remove_all() == []
    assert list(a.impairments) == [] and list(b.impairments) == [hb, fb]
    assert ha.removed and fa.removed and not hb.removed and not fb.removed


def test_remove_is_idempotent_and_deregisters(fake_kernel):
    tb = make_testbed("run")
    r1 = FakeNode("r1")
    handle = tb.apply_netem(r1, "r1-eth0", NetemSpec(delay=10))
    assert handle.remove() is True
    assert handle.remove() is False
    assert list(tb.impairments) == []
    with tb.apply_netem(r1, "r1-eth0", NetemSpec(delay=10)) as again:  # the interface is free
        assert list(tb.impairments) == [again]
    assert again.removed and list(tb.impairments) == []
    fault = tb.install_fault(r1, DropSynAck(dport=80))
    fault._table.hits[fault._key]["dropped"] = 1
    assert fault.remove() is True and fault.remove() is False
    assert fault.counters() == {"matched": 0, "dropped": 1}   # the final counts are kept
    assert fault._table.removed                                # its last fault: the table went
    json.dumps(fault.to_dict())
    assert fault.to_dict()["fault"] == {"dport": 80, "src": None, "dst": None}


def test_faults_of_a_node_share_one_table(fake_kernel):
    tb = make_testbed("run")
    first = tb.install_fault("r1", DropSynAck(dport=80))
    second = tb.install_fault("r1", faults.DropFirstFin(dport=80))
    other = tb.install_fault("h1", DropSynAck(dport=80))
    assert first._table is second._table is not other._table
    first.remove()
    assert not second._table.removed          # still holds the second fault


def test_auto_probes_a_node_once_and_falls_back(fake_kernel, monkeypatch):
    NoNft.probes = 0
    monkeypatch.setitem(impairments._TABLE_CLASSES, "nft", NoNft)
    tb = make_testbed("run")
    tb.install_fault("r1", DropSynAck(dport=80))
    tb.install_fault("r1", DropSynAck(dport=81))
    assert NoNft.probes == 1
    with pytest.raises(FaultsUnavailableError, match="no inet family"):
        tb.install_fault("r1", DropSynAck(dport=82), backend="nft")
    with pytest.raises(ConfigError, match="backend='iptables'"):
        tb.install_fault("r1", DropSynAck(dport=83), backend="iptables")


def test_bad_arguments_are_config_errors(fake_kernel):
    tb = make_testbed("run")
    with pytest.raises(ConfigError, match="needs a NetemSpec"):
        tb.apply_netem("r1", "r1-eth0", 10)
    with pytest.raises(ConfigError, match="no interface 'eth9'"):
        tb.apply_netem("r1", "eth9", NetemSpec(delay=1))
    with pytest.raises(ConfigError, match="unknown key 'delai'"):
        tb.apply_netem("r1", "r1-eth0", {"delai": 1})
    with pytest.raises(ConfigError, match="needs a Fault"):
        tb.install_fault("r1", "drop the SYN-ACK")
    assert list(tb.impairments) == []


def test_a_failed_apply_leaves_no_handle(monkeypatch):
    def fail(self):
        raise qdisc.NetemUnavailableError("kernel has no sch_netem")
    monkeypatch.setattr(qdisc.NetemHandle, "install", fail)
    tb = make_testbed("run")
    with pytest.raises(qdisc.NetemUnavailableError):
        tb.apply_netem("r1", "r1-eth0", NetemSpec(delay=1))
    assert list(tb.impairments) == []


def test_no_module_level_registries():
    import importlib
    import pkgutil
    for info in pkgutil.iter_modules(wirelab.impair.__path__):
        module = importlib.import_module(f"wirelab.impair.{info.name}")
        for name, value in vars(module).items():
            assert not isinstance(value, (weakref.WeakKeyDictionary, weakref.WeakValueDictionary)), \
                f"wirelab.impair.{info.name}.{name}: state belongs to the Testbed"
