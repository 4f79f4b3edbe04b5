"""netem declared in a topology: validated at build, applied on the named end's
egress when the network is up, removed at teardown; refused cleanly without
sch_netem."""

import pytest

from topologies.dumbbell import DumbbellTopo
from wirelab.errors import ConfigError
from wirelab.impair.qdisc import NetemUnavailableError, root_qdisc
from wirelab.impair.spec import NetemSpec
from wirelab.net.kernel import has_sch_netem
from wirelab.net.testbed import Testbed


def test_bad_declared_netem_is_a_config_error_before_anything_exists(host_state):
    with pytest.raises(ConfigError, match="loss"):
        DumbbellTopo(netem="loss=150%")
    assert DumbbellTopo(netem="delay=10ms").declared_netem() == {
        ("r1", "r1--r2"): str(NetemSpec.parse("delay=10ms"))}


def test_without_sch_netem_the_build_fails_cleanly(host_state):
    if has_sch_netem():
        pytest.skip("this kernel has sch_netem: nothing to refuse")
    tb = Testbed(DumbbellTopo(netem="delay=10ms"))
    with pytest.raises(NetemUnavailableError, match="no sch_netem"):
        tb.__enter__()
    # host_state checks that the half-built network is gone


@pytest.mark.netem
def test_declared_netem_is_applied_on_the_senders_side_only(host_state):
    delay_ms = 15
    with Testbed(DumbbellTopo(netem=f"delay={delay_ms}ms")) as tb:
        # The same handles as tb.apply_netem: owned by the Testbed, read back.
        [handle] = list(tb.impairments)
        assert (handle.node.name, handle.intf, handle.peer) == ("r1", "r1-eth0", "r2")
        assert handle.readback()["delay"] == delay_ms
        assert root_qdisc(tb["r2"], "r2-eth0")["kind"] != "netem"
        out = tb.run("snd1", ["ping", "-n", "-c", "3", "-i", "0.2", tb.ip("rcv1")], timeout=15).stdout
        rtt_min = float(out.strip().splitlines()[-1].split("=")[1].split("/")[0])
        # one direction delayed: the RTT grows by the delay once, not twice
        assert delay_ms <= rtt_min < 2 * delay_ms, out
        assert handle.counters()["packets"] >= 3
    assert handle.removed
