"""Live tests of netem (needs sch_netem: runs in User-Mode Linux); the targeted
faults are tested in test_faults.py.

::

    h1 10.0.1.2 ---- 10.0.1.1 r1 10.0.2.1 ---- 10.0.2.2 h2
            h1-eth0  r1-eth0      r1-eth1   h2-eth0

netem on r1-eth1 acts on what r1 sends toward h2 (h1 -> h2 traffic);
netem on h2-eth0 on what h2 sends back.

Netem tests on a kernel without sch_netem:
    tools/uml_run.py -- .venv/bin/python -m pytest -m netem tests/integration/test_netem_live.py
"""

import json
import os
import re
import signal

import pytest

from wirelab.errors import ConfigError, Interrupted
from wirelab.impair.qdisc import NetemUnavailableError, require_netem, root_qdisc
from wirelab.impair.spec import NetemSpec
from wirelab.net.kernel import has_sch_netem
from wirelab.net.testbed import Testbed
from wirelab.proc import wait_until

from tiny_topo import H2, RouterPair  # noqa: E402  (tests/integration on sys.path)


def diagnostics(tb, *nodes):
    """What a person needs when a live test fails (house style 12)."""
    out = []
    for n in nodes:
        for argv in (["tc", "-s", "qdisc"], ["ss", "-nita"], ["nft", "list", "ruleset"]):
            r = tb.run(n, argv, timeout=5, check=False)
            out.append(f"--- {n}: {' '.join(argv)}\n{r.stdout}{r.stderr}")
    return "\n".join(out)


# ----------------------------------------------------- no sch_netem (host)

def test_without_sch_netem_apply_raises_clear_error(tb):
    if has_sch_netem():
        pytest.skip("this kernel has sch_netem: nothing to refuse")
    before = root_qdisc(tb["r1"], "r1-eth1")
    with pytest.raises(NetemUnavailableError, match="kernel has no sch_netem"):
        tb.apply_netem("r1", "r1-eth1", NetemSpec(delay=10))
    with pytest.raises(NetemUnavailableError, match="kernel has no sch_netem"):
        require_netem()
    assert root_qdisc(tb["r1"], "r1-eth1")["kind"] == before["kind"]
    assert list(tb.impairments) == []     # the failed handle deregistered itself


# ------------------------------------------------------- netem (sch_netem)

RTT = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


def ping(tb, count=10, interval=0.05):
    """(received, min, avg, max) RTT in ms from h1 to h2."""
    done = tb.run("h1", ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1", H2],
                  timeout=count * interval + 10, check=False)
    received = int(re.search(r"(\d+) received", done.stdout).group(1))
    m = RTT.search(done.stdout)
    return (received, *(float(x) for x in m.groups()[:3])) if m else (received, None, None, None)


# Timer slack in the guest (UML's clock ticks) on top of the configured delay.
RTT_TOLERANCE_MS = 6.0


@pytest.mark.netem
def test_delay_both_ways_adds_twice_the_delay_to_rtt(fresh_tb):
    tb = fresh_tb
    base = ping(tb)
    delay = 25.0
    tb.apply_netem("r1", "r1-eth1", NetemSpec(delay=delay))
    tb.apply_netem(tb["h2"], "h2-eth0", {"delay": f"{delay}ms"})   # a node, keywords
    assert [(h.node.name, h.intf, h.peer) for h in tb.impairments] == [
        ("r1", "r1-eth1", "h2"), ("h2", "h2-eth0", "r1")]
    received, lo, avg, hi = ping(tb)
    print(f"baseline avg {base[2]:.3f} ms; with delay {delay} ms each way: "
          f"min {lo:.3f} avg {avg:.3f} max {hi:.3f} ms")
    info = f"base={base} now={(received, lo, avg, hi)}\n" + diagnostics(tb, "r1", "h2")
    assert received == 10, info
    assert lo >= 2 * delay, info                       # netem never delivers early
    assert avg <= 2 * delay + base[2] + RTT_TOLERANCE_MS, info


@pytest.mark.netem
def test_loss_100_drops_everything_and_counts_it(fresh_tb):
    tb = fresh_tb
    handle = tb.apply_netem("r1", "r1-eth1", NetemSpec(loss=100))
    received, *_ = ping(tb, count=5)
    stats = handle.counters()
    print(f"loss=100%: received {received}/5, qdisc {stats}")
    assert received == 0
    assert stats["packets"] == 0, stats
    assert stats["drops"] >= 5, stats


SPECS = [
    "delay=20ms",
    "delay=20ms jitter=5ms delay_corr=25%",
    "delay=20ms jitter=5ms distribution=normal",
    "delay=30ms jitter=10ms distribution=pareto",
    "delay=10ms loss=1% loss_corr=25% duplicate=1% duplicate_corr=10% corrupt=0.1%",
    "gemodel=1%,10%,70%,0.1%",
    "delay=10ms reorder=25% reorder_corr=50% gap=5",
    "delay=10ms rate=10mbit",
    "delay=1ms rate=40gbit",          # above 32 bits of bytes/s: TCA_NETEM_RATE64
    "delay=5ms limit=123",
]


@pytest.mark.netem
@pytest.mark.parametrize("text", SPECS)
def test_readback_equals_spec_and_tc_agrees(tb, text):
    spec = NetemSpec.parse(text)
    with tb.apply_netem("r1", "r1-eth1", spec) as handle:   # verifies the read-back itself
        assert spec.mismatches(handle.readback()) == []
        # Cross-check with tc's own JSON.
        tc = json.loads(tb.run("r1", ["tc", "-j", "-s", "qdisc", "show", "dev", "r1-eth1"],
                               timeout=5).stdout)
        root = [q for q in tc if q.get("root")][0]
        assert root["kind"] == "netem"
        assert root["options"]["limit"] == spec.effective_limit
        assert handle.to_dict()["readback"]["limit"] == spec.effective_limit
        json.dumps(handle.to_dict())
    assert handle.removed and root_qdisc(tb["r1"], "r1-eth1")["kind"] != "netem"


@pytest.mark.netem
def test_counters_change_and_clear(fresh_tb):
    tb = fresh_tb
    plain = root_qdisc(tb["r1"], "r1-eth1")["kind"]
    handle = tb.apply_netem("r1", "r1-eth1", NetemSpec(delay=40))
    assert handle.counters()["packets"] == 0
    received, lo, _, _ = ping(tb, count=10)
    stats = handle.counters()
    assert received == 10 and lo >= 40
    assert stats["packets"] >= 10 and stats["bytes"] >= 10 * 98, stats  # 98-byte echo requests
    assert stats["drops"] == 0, stats

    handle.change(NetemSpec(delay=5))
    received, lo, avg, _ = ping(tb, count=10)
    after = handle.counters()
    print(f"after change to 5ms: min {lo:.3f} avg {avg:.3f} ms; packets {after['packets']}")
    assert handle.readback()["delay"] == 5.0
    assert 5 <= lo and avg < 40, (lo, avg)
    assert after["packets"] >= stats["packets"] + 10, "change must not reset the qdisc"
    assert "netem on r1-eth1 delays/drops packets r1 sends toward h2" in tb.impairments.describe()[0]

    assert handle.remove() is True
    assert root_qdisc(tb["r1"], "r1-eth1")["kind"] == plain
    assert handle.remove() is False   # idempotent
    assert tb.impairments.describe() == []
    # The last reading is kept: what the kernel held and counted until the end.
    assert handle.counters()["packets"] >= after["packets"]
    assert handle.to_dict()["removed"] is True and handle.to_dict()["readback"]["delay"] == 5.0


@pytest.mark.netem
def test_change_from_a_table_to_uniform_recreates(fresh_tb):
    tb = fresh_tb
    handle = tb.apply_netem("r1", "r1-eth1", "delay=20ms jitter=2ms distribution=normal")
    handle.change(NetemSpec(delay=20, jitter=2))
    assert handle.readback()["jitter"] == 2.0


@pytest.mark.netem
def test_apply_refuses_a_second_netem_and_a_foreign_root_qdisc(fresh_tb):
    tb = fresh_tb
    first = tb.apply_netem("r1", "r1-eth1", NetemSpec(delay=1))
    with pytest.raises(ConfigError, match="already has netem"):
        tb.apply_netem("r1", "r1-eth1", NetemSpec(delay=2))
    tb.run("h2", ["tc", "qdisc", "add", "dev", "h2-eth0", "root", "handle", "1:", "tbf",
                  "rate", "1mbit", "burst", "10k", "latency", "50ms"], timeout=5)
    with pytest.raises(ConfigError, match="already has a root qdisc tbf"):
        tb.apply_netem("h2", "h2-eth0", NetemSpec(delay=2))
    assert list(tb.impairments) == [first]              # the refused ones left nothing
    assert root_qdisc(tb["h2"], "h2-eth0")["kind"] == "tbf"   # and did not touch the tbf


@pytest.mark.netem
def test_teardown_removes_netem_and_offloads_are_off():
    seen = {}
    with Testbed(RouterPair()) as tb:
        plain = root_qdisc(tb["r1"], "r1-eth1")["kind"]
        # Cleanups run after the impairments are removed, before the nodes stop.
        tb.add_cleanup("test: root qdisc after teardown",
                       lambda: seen.update(root_qdisc(tb["r1"], "r1-eth1")))
        handle = tb.apply_netem("r1", "r1-eth1", NetemSpec(delay=10, loss=1))
        from wirelab.net.netns import get_offloads, open_ioctl_socket
        with open_ioctl_socket(tb["r1"]) as sock:
            assert get_offloads(sock, "r1-eth1") == {"tso": False, "gso": False, "gro": False}
    assert seen["kind"] == plain
    assert handle.removed and handle.readback()["loss"] == 1.0


def _raise_inside(tb, how):
    if how == "exception":
        raise RuntimeError("boom")
    os.kill(os.getpid(), signal.SIGTERM)   # the Testbed turns it into Interrupted
    wait_until(lambda: False, 5, what="SIGTERM to interrupt the run")


@pytest.mark.netem
@pytest.mark.parametrize("how", ["exception", "signal"])
def test_teardown_removes_live_handles_on_exception_and_signal(how):
    seen = {}
    with pytest.raises(RuntimeError if how == "exception" else Interrupted):
        with Testbed(RouterPair()) as tb:
            plain = {"r1": root_qdisc(tb["r1"], "r1-eth1")["kind"],
                     "h2": root_qdisc(tb["h2"], "h2-eth0")["kind"], "live": []}
            tb.add_cleanup("test: root qdiscs after the impairments went", lambda: seen.update(
                r1=root_qdisc(tb["r1"], "r1-eth1")["kind"], h2=root_qdisc(tb["h2"], "h2-eth0")["kind"],
                live=list(tb.impairments)))
            kept = tb.apply_netem("r1", "r1-eth1", NetemSpec(delay=10))
            gone = tb.apply_netem("h2", "h2-eth0", NetemSpec(delay=5))
            assert gone.remove() is True
            _raise_inside(tb, how)
    assert seen == plain and "netem" not in plain.values(), seen
    assert kept.removed and gone.removed and kept.remove() is False

