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
import re

import pytest

from wirelab.impair import netem
from wirelab.net.testbed import Testbed

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
    from wirelab.net.uml import has_sch_netem
    if has_sch_netem():
        pytest.skip("this kernel has sch_netem: nothing to refuse")
    before = netem.netem_stats(tb, "r1", "r1-eth1")
    with pytest.raises(netem.NetemUnavailableError, match="kernel has no sch_netem"):
        netem.apply_netem(tb, "r1", "r1-eth1", netem.NetemSpec(delay=10))
    with pytest.raises(netem.NetemUnavailableError, match="kernel has no sch_netem"):
        netem.require_netem()
    assert netem.netem_stats(tb, "r1", "r1-eth1")["kind"] == before["kind"]
    assert netem.active(tb) == {}


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
    imps = netem.apply_link(tb, ("r1", "h2"), netem.NetemSpec(delay=delay), direction="both")
    assert [i.intf for i in imps] == ["r1-eth1", "h2-eth0"]
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
    netem.apply_netem(tb, "r1", "r1-eth1", netem.NetemSpec(loss=100))
    received, *_ = ping(tb, count=5)
    stats = netem.netem_stats(tb, "r1", "r1-eth1")
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
    spec = netem.NetemSpec.parse(text)
    netem.apply_netem(tb, "r1", "r1-eth1", spec)   # verifies the read-back itself
    try:
        stats = netem.netem_stats(tb, "r1", "r1-eth1")
        assert stats["kind"] == "netem"
        assert spec.mismatches(stats["options"]) == []
        # Cross-check with tc's own JSON.
        tc = json.loads(tb.run("r1", ["tc", "-j", "-s", "qdisc", "show", "dev", "r1-eth1"],
                               timeout=5).stdout)
        root = [q for q in tc if q.get("root")][0]
        assert root["kind"] == "netem"
        assert root["options"]["limit"] == spec.effective_limit
    finally:
        assert netem.clear_netem(tb, "r1", "r1-eth1")


@pytest.mark.netem
def test_counters_change_and_clear(fresh_tb):
    tb = fresh_tb
    plain = netem.netem_stats(tb, "r1", "r1-eth1")["kind"]
    netem.apply_netem(tb, "r1", "r1-eth1", netem.NetemSpec(delay=40))
    received, lo, _, _ = ping(tb, count=10)
    stats = netem.netem_stats(tb, "r1", "r1-eth1")
    assert received == 10 and lo >= 40
    assert stats["packets"] >= 10 and stats["bytes"] >= 10 * 98, stats  # 98-byte echo requests
    assert stats["drops"] == 0, stats

    netem.change_netem(tb, "r1", "r1-eth1", netem.NetemSpec(delay=5))
    received, lo, avg, _ = ping(tb, count=10)
    after = netem.netem_stats(tb, "r1", "r1-eth1")
    print(f"after change to 5ms: min {lo:.3f} avg {avg:.3f} ms; packets {after['packets']}")
    assert after["options"]["delay"] == 5.0
    assert 5 <= lo and avg < 40, (lo, avg)
    assert after["packets"] >= stats["packets"] + 10, "change must not reset the qdisc"
    assert "netem on r1-eth1 delays/drops packets r1 sends toward h2" in netem.describe(tb)[0]

    assert netem.clear_netem(tb, "r1", "r1-eth1") is True
    assert netem.netem_stats(tb, "r1", "r1-eth1")["kind"] == plain
    assert netem.clear_netem(tb, "r1", "r1-eth1") is False   # idempotent
    assert netem.describe(tb) == []


@pytest.mark.netem
def test_change_from_a_table_to_uniform_recreates(fresh_tb):
    tb = fresh_tb
    netem.apply_netem(tb, "r1", "r1-eth1", netem.NetemSpec.parse("delay=20ms jitter=2ms distribution=normal"))
    netem.change_netem(tb, "r1", "r1-eth1", netem.NetemSpec(delay=20, jitter=2))
    assert netem.netem_stats(tb, "r1", "r1-eth1")["options"]["jitter"] == 2.0


@pytest.mark.netem
def test_apply_refuses_a_second_netem_and_a_foreign_root_qdisc(fresh_tb):
    tb = fresh_tb
    from wirelab.errors import ConfigError
    netem.apply_netem(tb, "r1", "r1-eth1", netem.NetemSpec(delay=1))
    with pytest.raises(ConfigError, match="already has netem"):
        netem.apply_netem(tb, "r1", "r1-eth1", netem.NetemSpec(delay=2))
    tb.run("h2", ["tc", "qdisc", "add", "dev", "h2-eth0", "root", "handle", "1:", "tbf",
                  "rate", "1mbit", "burst", "10k", "latency", "50ms"], timeout=5)
    with pytest.raises(ConfigError, match="already has a root qdisc tbf"):
        netem.apply_netem(tb, "h2", "h2-eth0", netem.NetemSpec(delay=2))


@pytest.mark.netem
def test_teardown_removes_netem_and_offloads_are_off():
    seen = {}
    with Testbed(RouterPair()) as tb:
        plain = netem.netem_stats(tb, "r1", "r1-eth1")["kind"]
        # Registered before apply_netem, so it runs after netem's own cleanup.
        tb.add_cleanup("test: root qdisc after teardown",
                       lambda: seen.update(netem.netem_stats(tb, "r1", "r1-eth1")))
        netem.apply_netem(tb, "r1", "r1-eth1", netem.NetemSpec(delay=10, loss=1))
        from wirelab.net.netns import get_offloads, open_ioctl_socket
        with open_ioctl_socket(tb["r1"]) as sock:
            assert get_offloads(sock, "r1-eth1") == {"tso": False, "gso": False, "gro": False}
    assert seen["kind"] == plain

