"""Golden results on the committed captures, and what the generator injected."""

import pytest

from test_pcap_common import DATA, GOLDEN
from wirelab.observe.pcap import analyze

CAPTURES = sorted(GOLDEN["captures"])
INJ = GOLDEN["injected"]


@pytest.mark.parametrize("name", CAPTURES)
def test_matches_golden(name):
    rep = analyze(DATA / name)
    want = GOLDEN["captures"][name]
    assert (rep.packets, rep.tcp_packets, len(rep.flows), rep.truncated) == (
        want["packets"], want["tcp_packets"], want["flows"], want["truncated"])
    assert rep.totals() == want["totals"]


def test_clean_transfer_has_no_anomalies():
    rep = analyze(DATA / "base_clean.pcap")
    (f,) = rep.flows
    assert f.handshake.complete and f.teardown.fin_client and f.teardown.fin_server
    assert f.server.endswith(":5001")
    c2s = f.client_to_server
    assert c2s.unique_bytes == c2s.payload_bytes == 585 * 1024  # 600000 // 1024 * 1024 bytes sent
    for k in ("retransmissions", "out_of_order", "duplicate_acks", "duplicate_segments", "lost_segments"):
        assert getattr(c2s, k) == 0 and getattr(f.server_to_client, k) == 0, k
    assert f.server_to_client.rtt_samples > 100 and f.server_to_client.rtt_min_ms > 0
    assert c2s.goodput_bps > 0


def test_dropped_from_capture_are_lost_segments():
    rep = analyze(DATA / "crafted_drop.pcap")
    assert rep.totals()["lost_segments"] == INJ["crafted_drop.pcap"]["dropped_data_segments"]
    assert rep.totals()["retransmissions"] == 0


def test_duplicated_segments_are_counted():
    rep = analyze(DATA / "crafted_dup.pcap")
    t = rep.totals()
    assert t["duplicate_segments"] == INJ["crafted_dup.pcap"]["duplicated_data_segments"]
    # each duplicate is also one of Wireshark's retransmission/out-of-order kinds
    assert t["retransmissions"] + t["out_of_order"] == t["duplicate_segments"]


def test_swapped_segments_are_out_of_order():
    t = analyze(DATA / "crafted_reorder.pcap").totals()
    pairs = INJ["crafted_reorder.pcap"]["swapped_pairs"]
    assert t["out_of_order"] == pairs and t["lost_segments"] == pairs and t["retransmissions"] == 0


def test_real_loss_gives_fast_retransmissions():
    rep = analyze(DATA / "base_loss.pcap")
    c2s = rep.flows[0].client_to_server
    assert c2s.fast_retransmissions > 0 and rep.flows[0].server_to_client.duplicate_acks > 0
    assert c2s.retransmissions == (c2s.fast_retransmissions + c2s.timeout_retransmissions
                                   + c2s.spurious_retransmissions)
    # the receiver got everything exactly once: unique bytes = bytes sent
    assert c2s.unique_bytes == 800_000 // 1024 * 1024


def test_report_to_dict_round_trips_through_json():
    import json
    d = analyze(DATA / "base_v6.pcap").to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["flows"][0]["client"].startswith("[::1]:")
