"""The pure parts of the packets experiment: tolerances derived from the
kernel's timer constants, parameter validation, the MTU and sysctl handles'
validation, and the flow bookkeeping of the shared link (no root)."""

import types

import pytest

from wirelab.errors import ConfigError
from wirelab.experiment import packet_claims as pc
from wirelab.experiment import registry
from wirelab.net.mtu import LinkMtu
from wirelab.net.sysctl import SysctlChange, read_sysctl
from wirelab.observe import flowmix


def test_stall_retransmissions_from_the_rto_schedule():
    # worst RTO expiry k: (2^k - 1) x (200 ms x 9/8 + 10 ms) = 235, 705, 1645, 3525 ms
    assert pc.stall_retransmissions(1.0) == 2
    assert pc.stall_retransmissions(2.0) == 3
    assert pc.stall_retransmissions(1.7) == 3 and pc.stall_retransmissions(1.69) == 2   # 50 ms start slack
    assert pc.stall_retransmissions(4.0) == 4


def test_backoff_window_holds_a_doubling_late_by_the_wheel():
    lo, hi = pc.backoff_window_ms(209.6)       # measured: 209.6 then 404 ms
    assert lo <= 404.0 <= hi
    assert hi < 600 and lo > 300               # a tripling or no backoff would fail
    assert pc.blackhole_detection_ms(3) == 3000.0   # ((2 << 3) - 1) x TCP_RTO_MIN
    assert pc.blackhole_detection_ms(1) == 600.0


def test_params_validated_in_one_line():
    params = registry.load("packets").Params
    p = params()
    assert p.mtu == 1000 and max(p.tcp_sizes) == 1_000_000 and max(p.udp_sizes) == 65507
    for bad, text in [({"udp_sizes": (100, 65508)}, "udp_sizes"), ({"tcp_sizes": (5, 5)}, "different sizes"),
                      ({"mtu": 1500}, "mtu must be 576..1400"), ({"stall_seconds": 0.5}, "stall_seconds"),
                      ({"flows_per_host": 0}, "flows_per_host")]:
        with pytest.raises(ConfigError, match=text) as exc:
            params(**bad)
        assert "\n" not in str(exc.value)


def test_mtu_and_sysctl_handles_refuse_bad_values_before_touching_anything():
    tb = types.SimpleNamespace(resolve=lambda n: types.SimpleNamespace(name=n))
    for bad in (67, 65536, True, "1000"):
        with pytest.raises(ConfigError, match="mtu="):
            LinkMtu(tb, [("r2", "r2-eth1")], bad)
    with pytest.raises(ConfigError, match="at least one"):
        LinkMtu(tb, [], 1000)
    for key in ("kernel/hostname", "net/../kernel/hostname"):
        with pytest.raises(ConfigError, match="only a namespaced net/"):
            read_sysctl(None, key)
    change = SysctlChange(tb, "h1", "net/ipv4/tcp_mtu_probing", 1)
    assert change.value == "1" and change.remove() is False      # never applied: nothing to restore


def P(index, ts, src, sport, dst, dport, seq, n):
    return types.SimpleNamespace(index=index, ts_ns=ts, src=src, sport=sport, dst=dst, dport=dport,
                                 proto=6, seq=seq, tcp_payload=n)


def test_flow_bookkeeping_alternations_and_overlap():
    a, b = flowmix.flow_key("10.1.1.2", 1000, "10.2.1.2", 5001), flowmix.flow_key("10.1.2.2", 2000, "10.2.1.2", 5002)
    pk = [P(0, 0, "10.1.1.2", 1000, "10.2.1.2", 5001, 1, 100), P(1, 1, "10.1.2.2", 2000, "10.2.1.2", 5002, 7, 100),
          P(2, 2, "10.1.1.2", 1000, "10.2.1.2", 5001, 101, 100), P(3, 3, "10.1.1.2", 1000, "10.2.1.2", 5001, 101, 100),
          P(4, 4, "10.9.9.9", 1, "10.2.1.2", 5001, 1, 10), P(5, 5, "10.1.2.2", 2000, "10.2.1.2", 5002, 107, 0)]
    by_flow, unmatched = flowmix.data_packets_by_flow(pk, {a: "a", b: "b"})
    assert [p.index for p in by_flow[a]] == [0, 2, 3] and [p.index for p in by_flow[b]] == [1]
    assert unmatched == 1                        # the stranger; the pure ACK is not data
    assert flowmix.alternations(by_flow) == 2    # a b a a
    spans = flowmix.active_intervals(by_flow)
    assert spans == {a: (0, 3), b: (1, 1)} and flowmix.overlapping(spans, a, b)
    assert flowmix.covered_bytes(by_flow[a]) == 200   # the retransmission counts once
    serial = {a: by_flow[a], b: [P(9, 9, "10.1.2.2", 2000, "10.2.1.2", 5002, 7, 100)]}
    assert flowmix.alternations(serial) == 1 and not flowmix.overlapping(flowmix.active_intervals(serial), a, b)
