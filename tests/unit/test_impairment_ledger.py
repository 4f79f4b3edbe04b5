"""The impairment ledger against captures whose impairments are known.

The captures in tests/data/ledger/ come from make_captures.py (scapy, no
randomness), which also writes truth.json: what the generator's "link" did to
each packet. The ledger must find exactly that -- and a changed generator must
be re-run (the byte-for-byte test below says so).
"""

import dataclasses
import json
import os
import sys

import pytest

from wirelab.experiment import stats, timers
from wirelab.experiment.tcp_claims import netem_rate_claims
from wirelab.observe import tcp_evidence

from wirelab.observe import impairment as L

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(REPO, "tests", "data", "ledger")
UP, DOWN = os.path.join(DATA, "upstream.pcap"), os.path.join(DATA, "downstream.pcap")
CLIENT, SERVER = "10.1.0.1", "10.2.0.1"


@pytest.fixture(scope="module")
def truth():
    with open(os.path.join(DATA, "truth.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def ledger():
    return L.build_ledger(UP, DOWN, "upstream", "downstream")


def _ids(entries):
    return sorted(e["ip_id"] for e in entries)


def test_committed_captures_are_what_the_generator_writes(tmp_path):
    sys.path.insert(0, DATA)
    try:
        import make_captures
    finally:
        sys.path.remove(DATA)
    make_captures.main(str(tmp_path))
    for name in ("upstream.pcap", "downstream.pcap", "truth.json"):
        with open(tmp_path / name, "rb") as a, open(os.path.join(DATA, name), "rb") as b:
            assert a.read() == b.read(), f"{name} is stale: re-run make_captures.py"


def test_before_side_is_found_per_direction(ledger):
    fwd = ledger.for_direction(CLIENT)
    rev = ledger.for_direction(SERVER)
    assert (fwd.before, fwd.after) == ("upstream", "downstream")
    assert (rev.before, rev.after) == ("downstream", "upstream")
    # Swapping the arguments must not change who is before whom.
    swapped = L.build_ledger(DOWN, UP, "downstream", "upstream")
    assert swapped.for_direction(CLIENT).before == "upstream"


@pytest.mark.parametrize("who,ip", [("c", CLIENT), ("s", SERVER)])
def test_every_fate_matches_the_generator(ledger, truth, who, ip):
    d = ledger.for_direction(ip)
    sent = [p for p in truth["packets"] if p["who"] == who]
    assert len(d.departures) == len(sent)
    by_id = {dep.packet.ip_id: dep for dep in d.departures}
    for p in sent:
        dep = by_id[p["ip_id"]]
        want = {"deliver": "delivered", "drop": "dropped", "dup": "duplicated"}[p["fate"]]
        assert dep.fate == want, p["label"]
        assert dep.reordered == p["reordered"], p["label"]
    assert d.unexpected == []


def test_forward_summary_counts(ledger, truth):
    s = ledger.for_direction(CLIENT).summary()
    c = [p for p in truth["packets"] if p["who"] == "c"]
    assert s["all"] == {
        "departed": len(c),
        "arrived_once": sum(p["fate"] == "deliver" for p in c),
        "dropped": sum(p["fate"] == "drop" for p in c),
        "duplicated": sum(p["fate"] == "dup" for p in c),
        "extra_copies": sum(p["fate"] == "dup" for p in c),
        "reordered": sum(p["reordered"] for p in c),
    }
    assert _ids(s["dropped"]) == sorted(p["ip_id"] for p in c if p["fate"] == "drop")
    assert [e["rel_seq"] for e in s["reordered"]] == [801]  # segment 9
    assert [e["rel_seq"] for e in s["duplicated"]] == [601]  # segment 7
    # The one-way delay is the generator's 5 ms, 8 ms for the held segment.
    assert s["owd_ms"]["min"] == pytest.approx(5.0, abs=1e-3)
    assert s["owd_ms"]["max"] == pytest.approx(8.0, abs=1e-3)


def test_each_dropped_segment_is_proved_recovered(ledger, truth):
    rec = ledger.for_direction(CLIENT).summary()["recovery"]
    assert rec["dropped_with_sequence_space"] == 3  # SYN, segment 4, FIN
    assert rec["retransmitted"] == 3 and rec["unrecovered"] == []
    by_flags = {(r["flags"], r["rel_seq"]): r for r in rec["details"]}
    syn = by_flags[("S", 0)]
    assert syn["retransmitted_after_ms"] == pytest.approx(1000.0, abs=1e-3)
    assert syn["delivered_after_ms"] == pytest.approx(1005.0, abs=1e-3)
    seg4 = by_flags[("P.", 301)]
    assert seg4["transmissions"] == 2
    fin = by_flags[("F.", 1201)]
    assert fin["retransmitted_after_ms"] == pytest.approx(200.0, abs=1e-3)


def test_dropped_pure_ack_needs_no_retransmission(ledger):
    rev = ledger.for_direction(SERVER).summary()
    assert rev["all"]["dropped"] == 1 and rev["dropped"][0]["flags"] == "."
    assert rev["recovery"]["dropped_with_sequence_space"] == 0


def _pkt(i, seq, length, ip_id, t_ms, flags=L.ACK):
    return L.Packet(index=i, ts_ns=int(t_ms * 1e6), src="1.1.1.1", sport=1, dst="2.2.2.2",
                    dport=2, ip_id=ip_id, seq=seq, ack=1, flags=flags, payload_len=length,
                    tsval=None)


def test_an_unrecovered_drop_is_reported():
    before = [_pkt(0, 0, 100, 1, 0), _pkt(1, 100, 100, 2, 1), _pkt(2, 200, 100, 3, 2)]
    after = [_pkt(0, 0, 100, 1, 5), _pkt(1, 200, 100, 3, 7)]
    d = L.build_ledger(before, after).directions[0]
    rec = d.summary()["recovery"]
    assert rec["recovered"] == 0
    assert rec["unrecovered"][0]["missing"] == [[100, 200]]


def test_retransmission_with_other_segmentation_covers_the_bytes():
    # 100..300 lost as two segments, sent again as one 200-byte segment.
    before = [_pkt(0, 0, 100, 1, 0), _pkt(1, 100, 100, 2, 1), _pkt(2, 200, 100, 3, 2),
              _pkt(3, 100, 200, 4, 50)]
    after = [_pkt(0, 0, 100, 1, 5), _pkt(1, 100, 200, 4, 55)]
    rec = L.build_ledger(before, after).directions[0].summary()["recovery"]
    assert rec["recovered"] == 2 and rec["retransmitted"] == 2


def test_lost_spurious_retransmission_was_delivered_earlier():
    before = [_pkt(0, 0, 100, 1, 0), _pkt(1, 0, 100, 2, 300)]
    after = [_pkt(0, 0, 100, 1, 5)]
    rec = L.build_ledger(before, after).directions[0].summary()["recovery"]
    assert rec["details"][0]["how"] == "delivered_earlier"


def test_reordering_counts_only_late_packets():
    before = [_pkt(i, i * 100, 100, i + 1, i) for i in range(5)]
    # 3 overtakes 1 and 2: 1 and 2 are late (RFC 4737), 3 is not.
    order = [0, 3, 1, 2, 4]
    after = [_pkt(k, before[i].seq, 100, i + 1, 10 + k) for k, i in enumerate(order)]
    d = L.build_ledger(before, after).directions[0]
    assert [dep.reordered for dep in d.departures] == [False, True, True, False, False]


def test_non_capture_is_refused(tmp_path):
    from wirelab.errors import WirelabError
    p = tmp_path / "x.pcap"
    p.write_bytes(b"not a capture at all")
    with pytest.raises(L.LedgerError, match=r"x.pcap: not a pcap or pcapng file \(magic 0x6e6f7420\)$") as e:
        L.read_packets(str(p))
    assert isinstance(e.value, WirelabError) and e.value.exit_code == 2


def test_gzip_and_pcapng_captures_give_the_same_packets(tmp_path):
    """The ledger reads through the house reader: any format it knows."""
    import gzip
    p = tmp_path / "up.gz"
    with open(UP, "rb") as f:
        p.write_bytes(gzip.compress(f.read()))
    assert L.read_packets(str(p)) == L.read_packets(UP)
    assert not hasattr(L, "flag_names")  # one name, one concept: tcpflags.letters


# --------------------------------------------------------------- rate statistics
def test_wilson_interval_known_values():
    lo, hi = stats.wilson_interval(10, 100, z=1.959963984540054)
    # Reference values (Wilson 1927; e.g. statsmodels proportion_confint method="wilson").
    assert lo == pytest.approx(0.05522, abs=1e-4)
    assert hi == pytest.approx(0.17437, abs=1e-4)
    assert stats.wilson_interval(0, 50, z=3.29)[0] == 0.0
    assert stats.wilson_interval(50, 50, z=3.29)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        stats.wilson_interval(1, 0)


def test_false_alarm_probability_is_small_and_exact():
    p = stats.false_alarm_probability(0.02, 2000, z=stats.Z_9999)
    assert 0 < p < 2e-4
    # A 95% interval on the same sample misses about 5% of the time.
    assert 0.02 < stats.false_alarm_probability(0.02, 2000, z=1.96) < 0.09


def test_netem_model_of_loss_and_duplication():
    m = stats.netem_expected_rates(loss=0.1, duplicate=0.0)
    assert m["dropped"] == pytest.approx(0.1)
    m = stats.netem_expected_rates(loss=0.1, duplicate=0.2)
    # netem decides duplication first, then loss removes one copy.
    assert m["dropped"] == pytest.approx(0.1 * 0.8)


# ------------------------------------------- the experiment's pure logic (tcp_recovery)
def _tcp_recovery():
    sys.path.insert(0, os.path.join(REPO, "experiments"))
    try:
        import tcp_recovery
    finally:
        sys.path.remove(os.path.join(REPO, "experiments"))
    return tcp_recovery


def test_mathis_model():
    tr = _tcp_recovery()
    # 1448-byte MSS, 10 ms RTT, 1% loss: 1448*8/0.01 * 1.2247/0.1 = 14.19 Mbit/s.
    assert tr.mathis_goodput_bps(1448, 0.010, 0.01) == pytest.approx(14.187e6, rel=1e-3)
    # Four times the loss halves the rate.
    assert tr.mathis_goodput_bps(1448, 0.01, 0.04) == pytest.approx(
        tr.mathis_goodput_bps(1448, 0.01, 0.01) / 2)
    with pytest.raises(ValueError):
        tr.mathis_goodput_bps(1448, 0.01, 0)


@pytest.mark.parametrize("bad", [
    {"scenarios": ("loss", "jitter")}, {"faults": ("nth", "nth")}, {"bytes": 10},
    {"loss": 0}, {"loss": 60}, {"sweep_loss": (1.0, 0.0)}, {"delay": 0.5},
    {"scenarios": ("none",), "faults": ("none",)}])
def test_scenario_parameters_are_validated(bad):
    from wirelab.errors import ConfigError
    tr = _tcp_recovery()
    with pytest.raises(ConfigError):
        tr.TcpRecoveryParams(**bad)


def test_none_selects_nothing_and_specs_follow_parameters():
    tr = _tcp_recovery()
    p = tr.TcpRecoveryParams(scenarios=("none",), faults=("nth",), loss=4.0)
    assert p.scenarios == () and p.faults == ("nth",)
    specs = tr.scenario_specs(p)
    assert specs["loss"]["loss"] == 4.0 and specs["combo"]["loss"] == 2.0
    assert set(specs) == set(tr.SCENARIOS)


def test_binomial_below_known_values():
    # P[X < 1] = (1-p)^n; P[X < 3] for n=10, p=0.5 = (1+10+45)/1024.
    assert stats.binomial_below(1, 100, 0.02) == pytest.approx(0.98 ** 100)
    assert stats.binomial_below(3, 10, 0.5) == pytest.approx(56 / 1024)
    assert stats.binomial_below(0, 10, 0.5) == 0.0
    assert stats.binomial_below(3, 2, 0.5) == 1.0


def test_mss_option_is_read_from_the_syn(tmp_path):
    import dpkt
    import socket
    path = tmp_path / "syn.pcap"
    opts = (bytes([2, 4]) + (1460).to_bytes(2, "big")            # MSS 1460
            + bytes([1, 1, 8, 10]) + (7).to_bytes(4, "big") + bytes(4))  # NOP NOP TS
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        for i, (flags, o, payload) in enumerate([(L.SYN, opts, b""), (L.ACK, opts[4:], b"x" * 100)]):
            tcp = dpkt.tcp.TCP(sport=1000, dport=80, seq=5, flags=flags, opts=o, data=payload)
            tcp.off = (20 + len(o)) // 4
            ip = dpkt.ip.IP(src=socket.inet_aton(CLIENT), dst=socket.inet_aton(SERVER),
                            p=dpkt.ip.IP_PROTO_TCP, id=i, data=tcp)
            ip.len = 20 + len(bytes(tcp))
            w.writepkt(bytes(ip), ts=1.0 + i)
    syn, data = L.read_packets(str(path))
    assert (syn.mss, syn.tsval) == (1460, 7)
    assert data.mss is None and data.payload_len == 100   # only a SYN's option counts
    synack = dataclasses.replace(syn, src=SERVER, dst=CLIENT, flags=L.SYN | L.ACK)
    sizes = tcp_evidence.segment_sizes([syn, synack, data], CLIENT)
    assert sizes == {"mss_option": 1460, "timestamps": True, "payload": 100,
                     "payload_from_mss": 1460 - tcp_evidence.TCP_TIMESTAMP_OPTION_BYTES}


def test_committed_captures_have_no_mss_option_but_a_payload(ledger):
    sizes = tcp_evidence.segment_sizes(L.read_packets(UP), CLIENT)
    assert sizes["mss_option"] is None and sizes["payload"] == 100   # make_captures.MSS


def test_tolerances_follow_the_kernel_constants():
    tr = timers
    rtt = {"min": 5.0, "max": 10.0}
    lo, hi = tr.retransmission_window_ms("synack", rtt)
    # TCP_TIMEOUT_INIT 1 s: at most a jiffy early, never as late as the
    # second, backed-off retransmission (3 s).
    assert 1000 - tr.JIFFY_MAX_MS - 0.01 <= lo < 1000 < hi < 3000
    lo, hi = tr.retransmission_window_ms("fin", rtt)
    assert lo == pytest.approx(2 * 5.0 - tr.TS_DIFF_MS)             # tail loss probe >= 2 srtt
    assert hi >= 10.0 + tr.TCP_RTO_MIN_MS + 10.0                     # last ACK + the RTO
    lo_n, hi_n = tr.retransmission_window_ms("nth", rtt)
    assert lo_n == pytest.approx(5.0 - tr.TS_DIFF_MS) and hi_n == hi
    # A large RTT spread raises the RTO above TCP_RTO_MIN: 4 x (max - min).
    assert tr.rto_max_ms({"min": 1.0, "max": 101.0}) == pytest.approx(101.0 + 400.0)
    # One-way delay: never below the delay; above by the baseline's p90 + wake-up.
    lo, hi = tr.owd_window_ms(20.0, {"p90": 0.7, "median": 0.02})
    assert lo == pytest.approx(20.0 - tr.TS_DIFF_MS)
    assert hi == pytest.approx(20.0 + 0.7 + tr.MEDIAN_WAKEUP_SLACK_MS + tr.TS_DIFF_MS)
    assert tr.owd_window_ms(20.0, None) is None


class _Checks:
    """The experiment's pure claim logic, on figures made up by the test."""

    def __init__(self, tr, **params):
        self.tr, self.params = tr, tr.TcpRecoveryParams(**params)

    def check_rates(self, name, spec, m):
        return netem_rate_claims(name, spec, m, [])

    def check_scenario(self, name, spec, m):
        return self.tr.TcpRecovery.check_scenario(name, spec, m, None)


def _bare_experiment(tr, **params):
    return _Checks(tr, **params)


def _figures_without_evidence(nbytes=1_000_000):
    return {"bytes": nbytes, "ledger": {"data_direction": None, "ack_direction": None},
            "sender_side": None, "receiver_side": None, "segments": None, "netem": None}


def test_claims_without_evidence_are_stated_and_fail():
    tr = _tcp_recovery()
    exp = _bare_experiment(tr)
    specs = tr.scenario_specs(exp.params)
    for name in ("loss", "duplicate", "combo"):
        m = _figures_without_evidence()
        claims = exp.check_rates(name, specs[name], m) + exp.check_scenario(name, specs[name], m)
        names = [c.name for c in claims]
        assert f"{name}: measured loss (packets that vanished) matches netem's setting" in names
        if specs[name].get("loss"):
            assert f"{name}: losses were repaired by fast retransmission after duplicate ACKs" in names
        if specs[name].get("duplicate"):
            assert f"{name}: duplicated segments reached the receiver and were not delivered twice" in names
        assert claims and not any(c.ok for c in claims), [c.line() for c in claims if c.ok]


def _figures_with(drops=0, copies=0, fast=0, dup_acks=0, rcv_dups=0, nbytes=1_000_000):
    led = {"departed": 700, "dropped": drops, "duplicated": copies, "data_dropped": drops,
           "data_extra_copies": copies, "data_reordered": 0, "data_departed": 700,
           "owd_ms": {"median": 5.05, "p90": 5.1}}
    return {"bytes": nbytes, "ledger": {"data_direction": led, "ack_direction": None},
            "sender_side": {"client_to_server": {"fast_retransmissions": fast},
                            "server_to_client": {"duplicate_acks": dup_acks, "rtt_min_ms": 5.04}},
            "receiver_side": {"client_to_server": {"duplicate_segments": rcv_dups}},
            "segments": {"payload": 1448}, "netem": None}


def _claim(claims, text):
    return next(c for c in claims if text in c.name)


def test_fast_retransmit_claim_is_required_when_the_parameters_make_drops_certain():
    tr = _tcp_recovery()
    exp = _bare_experiment(tr, loss=2.0)
    spec = tr.scenario_specs(exp.params)["loss"]
    # 1 MB / 1448 B = 691 segments at 2%: about 14 drops expected; two is a failure.
    c = _claim(exp.check_scenario("loss", spec, _figures_with(drops=2)), "fast retransmission")
    assert not c.ok and "cause" in c.measured
    c = _claim(exp.check_scenario("loss", spec, _figures_with(drops=14, fast=0, dup_acks=9)),
               "fast retransmission")
    assert not c.ok
    c = _claim(exp.check_scenario("loss", spec, _figures_with(drops=14, fast=3, dup_acks=9)),
               "fast retransmission")
    assert c.ok
    # 100 kB at 0.5%: 70 segments, P[< 3 drops] ~ 0.95: not required, stated as not exercised.
    exp = _bare_experiment(tr, loss=0.5)
    spec = tr.scenario_specs(exp.params)["loss"]
    c = _claim(exp.check_scenario("loss", spec, _figures_with(drops=1, nbytes=100_000)),
               "fast retransmission")
    assert c.ok and "not exercised" in c.measured


def test_duplicate_claim_fails_when_the_network_made_no_copies():
    tr = _tcp_recovery()
    exp = _bare_experiment(tr)
    spec = tr.scenario_specs(exp.params)["duplicate"]
    c = _claim(exp.check_scenario("duplicate", spec, _figures_with(copies=0)), "duplicated segments")
    assert not c.ok and "no copies" in c.measured["cause"]
    c = _claim(exp.check_scenario("duplicate", spec, _figures_with(copies=30, rcv_dups=30)),
               "duplicated segments")
    assert c.ok
