"""wirelab.observe.messages: JSON messages rebuilt from captures the tests write
byte by byte (wirelab.observe.msgsynth): TCP with drops and retransmissions,
reordering, copies, overlaps, sequence wraparound, a reused 4-tuple, holes,
RST, no FIN, no SYN; UDP with copies, IPv6, IP fragments; the comparison with
app event logs; and a property test over random segment orders."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirelab.observe import messages
from wirelab.observe import msgsynth as S
from wirelab.observe.messages import (MessageStream, PcapFormatError, match_logged, read_event_log,
                                      rebuild)

C, SV = ("10.1.0.2", 41234), ("10.1.0.11", 6000)
C6, SV6 = ("fd77:2::2", 41234), ("fd77:2::11", 6000)
REQ = json.dumps({"type": "map", "task": 7, "input": "a" * 2600}).encode()   # 3 segments of 1000
RESP = json.dumps({"type": "result", "task": 7, "words": 412}).encode()


@pytest.fixture(autouse=True, params=["vectorised", "per-segment"])
def clean_path(request, monkeypatch):
    """Every test twice: clean streams rebuilt in one step (tcpfast) from the first
    TCP row, and every segment through tcpstream."""
    monkeypatch.setattr(messages, "CLEAN_MIN_ROWS", 1 if request.param == "vectorised" else 1 << 62)


def write(tmp_path, pkts, name="c.pcap", **kw):
    path = tmp_path / name
    path.write_bytes(S.pcap_file(pkts, **kw))
    return path


def retimed(pkts, step=100_000, t0=1_700_000_000_000_000_000):
    """The packets in this order, with increasing times (a capture's order)."""
    return [(t0 + i * step, p[1], p[2]) for i, p in enumerate(pkts)]


def by_tag(pkts):
    return {p[2]: p for p in pkts}


def one(msgs, src):
    found = [m for m in msgs if tuple(m.src) == src]
    assert len(found) == 1, [m.to_dict() for m in msgs]
    return found[0]


def test_clean_connection_both_directions(tmp_path):
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    msgs = rebuild(write(tmp_path, pkts))
    assert len(msgs) == 2
    req, resp = one(msgs, C), one(msgs, SV)
    assert req.message == json.loads(REQ) and req.error is None and req.bytes == len(REQ)
    assert (req.transport, req.dst) == ("tcp", SV)
    assert resp.message == json.loads(RESP) and resp.dst == C
    tags = by_tag(pkts)
    # t: the first data segment; t_end: the last one (first arrivals)
    assert req.t == pytest.approx(tags["c2s:0"][0] / 1e9) and req.t_end == pytest.approx(tags["c2s:2"][0] / 1e9)
    assert req.frame == [p[2] for p in pkts].index("c2s:0") + 1
    assert (req.retransmitted_segments, req.duplicate_segments, req.out_of_order_segments) == (0, 0, 0)
    d = req.to_dict()
    assert d["src"] == list(C) and json.loads(json.dumps(d)) == d


def test_drop_before_the_capture_then_retransmission(tmp_path):
    """Receiver-side capture: c2s:1 lost on the way, re-sent after c2s:2."""
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    tags = by_tag(pkts)
    order = [p for p in pkts if p[2] != "c2s:1"]
    order.insert(order.index(tags["fin:c"]) + 1, tags["c2s:1"])
    req = one(rebuild(write(tmp_path, retimed(order))), C)
    assert req.message == json.loads(REQ) and req.error is None
    # c2s:2 and the FIN arrived while bytes 1000..1999 were missing
    assert (req.retransmitted_segments, req.out_of_order_segments, req.duplicate_segments) == (0, 1, 0)
    # the last byte came first with c2s:2 (not with the retransmission)
    assert req.t_end < retimed(order)[order.index(tags["c2s:1"])][0] / 1e9


def test_sender_side_retransmission_and_netem_copy(tmp_path):
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    tags = by_tag(pkts)
    seg = tags["c2s:1"]
    resent = S.tcp_packet(C[0], SV[0], C[1], SV[1], 1001 + 1000, 5001, S.ACK | S.PSH,
                          REQ[1000:2000], ip_id=999)   # the sender's own: a new IP ID
    order = list(pkts)
    i = order.index(seg)
    order[i + 1:i + 1] = [seg, (0, resent, "re")]   # a copy made by the network, then a retransmission
    req = one(rebuild(write(tmp_path, retimed(order))), C)
    assert req.message == json.loads(REQ)
    assert (req.retransmitted_segments, req.duplicate_segments, req.out_of_order_segments) == (1, 1, 0)


def test_overlapping_retransmission_repacketised(tmp_path):
    """Segments 0 and 1 lost; re-sent as 0..499, then 0..999 and 300..1999 (overlapping)."""
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    tags = by_tag(pkts)
    mk = lambda lo, hi, ipid: (0, S.tcp_packet(C[0], SV[0], C[1], SV[1], 1001 + lo, 5001, S.ACK,  # noqa: E731
                                                REQ[lo:hi], ip_id=ipid), f"{lo}")
    order = [p for p in pkts if p[2] not in ("c2s:0", "c2s:1")]
    at = order.index(tags["fin:c"]) + 1
    order[at:at] = [mk(0, 500, 50), mk(0, 1000, 51), mk(300, 2000, 52), mk(0, 1000, 53)]
    req = one(rebuild(write(tmp_path, retimed(order))), C)
    assert req.message == json.loads(REQ) and req.error is None
    # 0..999 and 300..1999 overlap bytes already there; the last 0..999 came after
    # the stream was complete (not counted: counts stop at completion)
    assert req.retransmitted_segments == 2
    assert req.out_of_order_segments == 1       # c2s:2 before 0..1999


def test_reordering(tmp_path):
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    tags = by_tag(pkts)
    order = list(pkts)
    a, b = order.index(tags["c2s:0"]), order.index(tags["c2s:1"])
    order[a], order[b] = order[b], order[a]
    req = one(rebuild(write(tmp_path, retimed(order))), C)
    assert req.message == json.loads(REQ) and req.out_of_order_segments == 1
    assert req.t == pytest.approx(retimed(order)[b][0] / 1e9)   # byte 0 came second


@pytest.mark.parametrize("isn", [0xFFFFFFFF, 0xFFFFFC00, 0xFFFFFFFF - 1500])
def test_sequence_wraparound(tmp_path, isn):
    pkts = S.tcp_connection(C, SV, REQ, RESP, isn_c=isn, isn_s=isn - 7)
    tags = by_tag(pkts)
    order = list(pkts)
    a, b = order.index(tags["c2s:1"]), order.index(tags["c2s:2"])
    order[a], order[b] = order[b], order[a]
    msgs = rebuild(write(tmp_path, retimed(order)))
    assert one(msgs, C).message == json.loads(REQ) and one(msgs, SV).message == json.loads(RESP)


def test_same_4tuple_reused_by_a_new_connection(tmp_path):
    first = S.tcp_connection(C, SV, b'{"n": 1}', b'{"ok": 1}', isn_c=100, isn_s=900)
    second = S.tcp_connection(C, SV, b'{"n": 2}', b'{"ok": 2}', isn_c=7_000_000, isn_s=80_000,
                              t0=first[-1][0] + 1_000_000)
    late = (0, first[3][1], "late")   # first connection's data segment, re-sent after it closed
    msgs = rebuild(write(tmp_path, first + [late] + second))
    assert [(m.src, m.message) for m in msgs] == [(C, {"n": 1}), (SV, {"ok": 1}), (C, {"n": 2}), (SV, {"ok": 2})]
    assert all(m.error is None for m in msgs)


def test_reuse_with_the_same_isn_is_one_connection(tmp_path):
    """A SYN repeated (same ISN) is a retransmitted SYN, not a new connection."""
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    order = [pkts[0]] + pkts
    msgs = rebuild(write(tmp_path, retimed(order)))
    assert len(msgs) == 2 and one(msgs, C).message == json.loads(REQ)


def test_hole_is_an_error_not_garbage(tmp_path):
    pkts = [p for p in S.tcp_connection(C, SV, REQ, RESP) if p[2] != "c2s:1"]
    msgs = rebuild(write(tmp_path, pkts))
    req = one(msgs, C)
    assert req.message is None and req.error == "truncated stream: gap at byte 1000"
    assert req.bytes == len(REQ)
    assert one(msgs, SV).error is None


def test_missing_tail_without_fin_is_a_gap(tmp_path):
    pkts = [p for p in S.tcp_connection(C, SV, REQ, RESP) if p[2] not in ("c2s:2", "fin:c")]
    req = one(rebuild(write(tmp_path, pkts)), C)
    # nothing says bytes are missing but the FIN: the stream was never closed
    assert req.message is None and req.error.startswith("connection never closed; not JSON")


def test_never_closed_and_reset(tmp_path):
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    no_fin = [p for p in pkts if p[2] != "fin:s"]
    resp = one(rebuild(write(tmp_path, no_fin)), SV)
    assert resp.message == json.loads(RESP) and resp.error == "connection never closed"
    cut = pkts[:[p[2] for p in pkts].index("s2c:0") + 1]
    rst = S.tcp_packet(C[0], SV[0], C[1], SV[1], 1001 + len(REQ) + 1, 0, S.RST)
    resp = one(rebuild(write(tmp_path, retimed(cut + [(0, rst, "rst")]))), SV)
    assert resp.error == "connection reset (RST) before FIN" and resp.message == json.loads(RESP)


def test_capture_started_mid_connection(tmp_path):
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    tags = by_tag(pkts)
    order = pkts[pkts.index(tags["c2s:0"]):]
    a, b = order.index(tags["c2s:0"]), order.index(tags["c2s:1"])
    order[a], order[b] = order[b], order[a]   # the first byte seen is not byte 0
    req = one(rebuild(write(tmp_path, retimed(order))), C)
    assert req.message == json.loads(REQ) and req.error == "no SYN: start of stream not captured"


def test_not_json_and_snap_length(tmp_path):
    pkts = S.tcp_connection(C, SV, b"GET / HTTP/1.0\r\n\r\n", b"{")
    msgs = rebuild(write(tmp_path, pkts))
    assert one(msgs, C).message is None and one(msgs, C).error.startswith("not JSON: Expecting value")
    assert one(msgs, SV).error.startswith("not JSON: Expecting property name")
    # every frame cut at 80 bytes: 26 bytes of each data segment's payload are there
    path = tmp_path / "snap.pcap"
    raw = S.pcap_file(S.tcp_connection(C, SV, REQ, RESP))
    out, off = [raw[:24]], 24
    import struct
    while off < len(raw):
        s, f, incl, orig = struct.unpack_from("<IIII", raw, off)
        keep = min(incl, 80)
        out.append(struct.pack("<IIII", s, f, keep, orig) + raw[off + 16:off + 16 + keep])
        off += 16 + incl
    path.write_bytes(b"".join(out))
    req = one(rebuild(path), C)
    assert req.message is None
    assert req.error == "truncated stream: gap at byte 26 (packets cut by the capture's snap length)"


def test_udp_copies_ipv6_empty_and_port_filter(tmp_path):
    hb = json.dumps({"type": "heartbeat", "node": "cs3", "seq": 1}).encode()
    pkts = [(1, S.udp_packet("10.1.0.3", "10.1.0.11", 5000, 7000, hb)),
            (2, S.udp_packet("10.1.0.3", "10.1.0.11", 5000, 7000, hb)),   # netem duplicate
            (3, S.udp_packet("fd77:2::3", "fd77:2::11", 5000, 7000, hb)),
            (4, S.udp_packet("10.1.0.3", "10.1.0.11", 5000, 7000, b"")),
            (5, S.udp_packet("10.1.0.3", "10.1.0.99", 5353, 5353, b"not json"))]
    path = write(tmp_path, [(1_700_000_000_000_000_000 + t, p, "") for t, p in pkts])
    msgs = rebuild(path)
    assert [(m.src[0], m.message, m.error) for m in msgs] == [
        ("10.1.0.3", json.loads(hb), None), ("10.1.0.3", json.loads(hb), None),
        ("fd77:2::3", json.loads(hb), None), ("10.1.0.3", None, "empty"),
        ("10.1.0.3", None, "not JSON: Expecting value: line 1 column 1 (char 0)")]
    assert all(m.transport == "udp" and m.t == m.t_end for m in msgs)
    assert "retransmitted_segments" not in msgs[0].to_dict()
    assert len(rebuild(path, ports={7000})) == 4 and len(rebuild(path, ports=[9])) == 0


def test_ipv6_tcp(tmp_path):
    msgs = rebuild(write(tmp_path, S.tcp_connection(C6, SV6, REQ, RESP, isn_c=0xFFFFFFF0)))
    assert one(msgs, C6).message == json.loads(REQ) and one(msgs, SV6).message == json.loads(RESP)
    assert one(msgs, C6).dst == SV6


@pytest.mark.parametrize("src,dst,mtu", [("10.1.0.3", "10.1.0.11", 1500), ("fd77:2::3", "fd77:2::11", 1280)])
def test_ip_fragments(tmp_path, src, dst, mtu):
    big = json.dumps({"type": "blocks", "list": list(range(1500))}).encode()
    frags = S.ip_fragments(src, dst, 5000, 7000, big, mtu)
    assert len(frags) >= 4
    t0 = 1_700_000_000_000_000_000
    whole = rebuild(write(tmp_path, [(t0 + i, f, "") for i, f in enumerate(reversed(frags))]))
    assert len(whole) == 1 and whole[0].message == json.loads(big) and whole[0].bytes == len(big)
    assert whole[0].t == pytest.approx(t0 / 1e9) and whole[0].src == (src, 5000)
    lost = [f for i, f in enumerate(frags) if i != 2]
    part = rebuild(write(tmp_path, [(t0 + i, f, "") for i, f in enumerate(lost)]))
    assert len(part) == 1 and part[0].message is None
    assert part[0].error.startswith("IP fragments missing: fragment at")
    assert rebuild(write(tmp_path, [(t0 + i, f, "") for i, f in enumerate(frags)]), ports=[1]) == []


def test_stats_and_streaming(tmp_path):
    pkts = S.tcp_connection(C, SV, REQ, RESP) + S.tcp_connection(
        ("10.1.0.4", 40000), SV, b"{}", b"[]", t0=1_700_000_001_000_000_000)
    stream = MessageStream(write(tmp_path, pkts))
    assert len(list(stream)) == 4
    st_ = stream.stats
    assert (st_.packets, st_.tcp_connections, st_.udp_datagrams, dict(st_.messages)) == (len(pkts), 2, 0, {"tcp": 4})


def test_truncated_capture(tmp_path):
    raw = S.pcap_file(S.tcp_connection(C, SV, REQ, RESP))
    path = tmp_path / "cut.pcap"
    path.write_bytes(raw[:-80])   # into the server's FIN (the last packet is 70 bytes)
    with pytest.raises(PcapFormatError, match="truncated after"):
        rebuild(path)
    msgs = rebuild(path, allow_truncated=True)
    assert one(msgs, C).message == json.loads(REQ) and one(msgs, SV).error == "connection never closed"


# -- the comparison with app logs ---------------------------------------------------------------
def ev(event, transport, src, dst, message, t=0.0):
    return {"t": t, "event": event, "transport": transport, "src": list(src), "dst": list(dst), "message": message}


def test_match_logged(tmp_path):
    hb = {"type": "heartbeat", "seq": 1}
    lost = {"type": "heartbeat", "seq": 2}
    u_src, u_dst = ("10.1.0.3", 5000), ("10.1.0.11", 7000)
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    t = pkts[-1][0]
    raw_hb = json.dumps(hb, separators=(", ", ": ")).encode()   # other spacing, same message
    pkts += [(t + 1, S.udp_packet(*u_src[:1], u_dst[0], u_src[1], u_dst[1], raw_hb), ""),
             (t + 2, S.udp_packet(u_src[0], u_dst[0], u_src[1], u_dst[1], raw_hb), ""),
             (t + 3, S.udp_packet("10.1.0.5", u_dst[0], 5001, 7000, b'{"who": "?"}'), "")]
    rebuilt = rebuild(write(tmp_path, pkts))
    log = tmp_path / "app.jsonl"
    lines = [ev("send", "tcp", C, SV, json.loads(REQ)), ev("recv", "tcp", C, SV, json.loads(REQ)),
             ev("send", "tcp", ("::ffff:10.1.0.11", 6000), C, json.loads(RESP)),
             ev("recv", "tcp", SV, C, json.loads(RESP)),
             ev("send", "udp", u_src, u_dst, {"seq": 1, "type": "heartbeat"}),
             ev("recv", "udp", u_src, u_dst, hb), ev("recv", "udp", u_src, u_dst, hb),
             ev("send", "udp", u_src, u_dst, lost), {"t": 1, "event": "start"}]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\nREADY\n{\"event\": \"send\"}\n")
    events = read_event_log(log)
    assert (len(events), events.skipped, events.other, events.malformed) == (8, 1, 1, 1)
    res = match_logged(rebuilt, [events])
    c = res["counts"]
    assert (c["matched"], c["missing_on_wire"], c["extra_on_wire"], c["duplicates"], c["not_received"]) \
        == (3, 1, 1, 1, 0)
    assert res["missing_on_wire"][0]["message"] == lost
    assert res["extra_on_wire"][0]["src"] == ["10.1.0.5", 5001]
    assert res["duplicates"][0]["message"] == hb and res["duplicates"][0]["received"] == 2
    assert not res["ok"]
    # the clean case: everything logged once, received once
    clean = [e for e in lines[:4]]
    res = match_logged([m for m in rebuilt if m.transport == "tcp"], clean)
    assert res["ok"] and res["counts"]["matched"] == 2 and res["matched"][0]["t_sent"] == 0.0


def test_match_logged_unreadable_and_not_received(tmp_path):
    pkts = [p for p in S.tcp_connection(C, SV, REQ, RESP) if p[2] != "c2s:1"]
    rebuilt = rebuild(write(tmp_path, pkts))
    res = match_logged(rebuilt, [ev("send", "tcp", C, SV, json.loads(REQ)),
                                 ev("send", "tcp", SV, C, json.loads(RESP))])
    assert res["counts"]["unreadable_on_wire"] == 1 and res["counts"]["missing_on_wire"] == 1
    assert res["counts"]["matched"] == 1 and res["counts"]["not_received"] == 0   # no recv log given
    server_log = [ev("send", "tcp", SV, C, json.loads(RESP)), ev("recv", "tcp", C, SV, json.loads(REQ))]
    res = match_logged(rebuilt, server_log)
    assert res["not_received"] == []   # the response's receiver (the client) gave no log
    client_log = [ev("recv", "tcp", SV, C, {"something": "else"})]
    res = match_logged(rebuilt, server_log + client_log)
    assert [e["message"] for e in res["not_received"]] == [json.loads(RESP)]
    assert sorted(messages.canonical(e["message"]) for e in res["missing_on_wire"]) == sorted(
        messages.canonical(m) for m in (json.loads(REQ), {"something": "else"}))


# -- property: any order, any copies, the same message ------------------------------------------
SEGMENTS = st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=SEGMENTS, data=st.data(), isn=st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_any_order_and_copies_rebuild_the_message(tmp_path, sizes, data, isn):
    message = {"type": "chunk", "body": "".join(chr(97 + i % 26) for i in range(sum(sizes) + 40))}
    payload = json.dumps(message).encode()
    # cut into segments of the drawn sizes (the last takes the rest), some overlapping
    cuts, at = [], 0
    for n in sizes:
        if at >= len(payload):
            break
        back = data.draw(st.integers(min_value=0, max_value=min(at, 50)))
        cuts.append((at - back, min(at + n, len(payload))))
        at = min(at + n, len(payload))
    cuts.append((at, len(payload)))
    segs = [S.tcp_packet(C[0], SV[0], C[1], SV[1], isn + 1 + a, 1, S.ACK, payload[a:b], ip_id=i)
            for i, (a, b) in enumerate(cuts) if b > a]
    fin = S.tcp_packet(C[0], SV[0], C[1], SV[1], isn + 1 + len(payload), 1, S.ACK | S.FIN, ip_id=9999)
    copies = data.draw(st.lists(st.sampled_from(segs + [fin]), max_size=6))
    order = data.draw(st.permutations(segs + [fin] + copies))
    syn = S.tcp_packet(C[0], SV[0], C[1], SV[1], isn, 0, S.SYN, ip_id=0)
    pkts = retimed([(0, p, "") for p in [syn] + list(order)])
    msgs = rebuild(write(tmp_path, pkts, name="prop.pcap"))
    assert len(msgs) == 1
    assert msgs[0].message == message and msgs[0].error is None and msgs[0].bytes == len(payload)


# -- the committed real captures, against the house's Wireshark-equivalent analysis ------------
@pytest.mark.parametrize("name", ["base_loss", "base_clean", "base_v6", "crafted_dup", "crafted_reorder"])
def test_committed_captures_agree_with_the_tcp_analysis(name):
    """These were captured with -s 96 (payload cut): the message is an error, but the
    segments TCP hid are counted in sequence space as Wireshark counts them."""
    from test_pcap_common import DATA, GOLDEN
    from wirelab.observe.pcap import analyze
    path = DATA / f"{name}.pcap"
    (msg,) = rebuild(path)
    (flow,) = analyze(path).flows
    data_dir = flow.client_to_server
    assert msg.message is None and msg.error.endswith("(packets cut by the capture's snap length)")
    assert msg.bytes == data_dir.unique_bytes
    assert msg.retransmitted_segments + msg.duplicate_segments == data_dir.duplicate_segments
    injected = GOLDEN["injected"].get(f"{name}.pcap", {})
    assert msg.duplicate_segments == injected.get("duplicated_data_segments", 0)
    assert msg.out_of_order_segments == injected.get("swapped_pairs", 0)


def test_vectorised_and_per_segment_paths_agree(tmp_path, monkeypatch):
    """A mixed capture (clean and impaired connections, reused 4-tuples, RST, UDP):
    the same messages, field for field, whichever path rebuilds the clean ones."""
    import random
    rng = random.Random(7)
    pkts, t = [], 1_700_000_000_000_000_000
    for i in range(60):
        req = json.dumps({"type": "task", "id": i, "pad": "x" * rng.randint(0, 3000)}).encode()
        conn = S.tcp_connection((f"10.1.0.{i % 3 + 2}", 40000 + i % 7), SV, req, b'{"ok": true}',
                                isn_c=rng.getrandbits(32), isn_s=rng.getrandbits(32), t0=t, step=30_000)
        kind = i % 5
        if kind == 1:     # a copy of a data segment
            conn.insert(4, conn[3])
        elif kind == 2:   # a reset instead of the server's FIN
            conn[-2] = (conn[-2][0], S.tcp_packet(SV[0], f"10.1.0.{i % 3 + 2}", SV[1], 40000 + i % 7,
                                                  0, 0, S.RST), "rst")
        pkts += conn
        pkts.append((t + 7, S.udp_packet("10.1.0.9", SV[0], 5000, 7000, b'{"hb": %d}' % i), ""))
        t += rng.randint(10_000, 400_000)   # connections overlap
    pkts.sort(key=lambda p: p[0])
    path = write(tmp_path, pkts)
    calls = []
    real = messages.split_clean
    monkeypatch.setattr(messages, "split_clean", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(messages, "CLEAN_MIN_ROWS", 1)
    fast = [m.to_dict() for m in rebuild(path)]
    assert calls
    monkeypatch.setattr(messages, "CLEAN_MIN_ROWS", 1 << 62)
    slow = [m.to_dict() for m in rebuild(path)]
    assert fast == slow and len(fast) == 60 * 3
    assert sum(m.get("duplicate_segments", 0) for m in fast) == 12
    assert sum(1 for m in fast if m["error"] == "connection reset (RST) before FIN") == 12


@pytest.mark.parametrize("raw,value,error", [
    (b'{"a": 1}\n', {"a": 1}, None), (b' \t{"a": 1}', {"a": 1}, None),
    ('{"a": "\u00e9"}'.encode("utf-16"), {"a": "\u00e9"}, None), (b'\xef\xbb\xbf[1]', [1], None),
    (b'{"a": 1}\x0b', None, "not JSON: Extra data: line 1 column 9 (char 8)"),
    (b'{"a": 1}{"b": 2}', None, "not JSON: Extra data: line 1 column 9 (char 8)"),
    (b"\xff\xfe\xfd", None, "not JSON: 'utf-16-le' codec can't decode byte 0xfd in position 2: truncated data"),
    (b"", None, "empty")])
def test_decode_json(raw, value, error):
    assert messages.decode_json(raw) == (value, error)


def test_peer_reset_before_the_fin(tmp_path):
    """The server resets while the client's request is still open: the request
    was cut off, whichever path rebuilds it; one connection is counted."""
    pkts = S.tcp_connection(C, SV, REQ, RESP)
    tags = by_tag(pkts)
    rst = (0, S.tcp_packet(SV[0], C[0], SV[1], C[1], 5001, 0, S.RST), "rst")
    order = [p for p in pkts if not p[2].startswith(("s2c", "ack:s2c", "fin:s", "ack:fin"))]
    order.insert(order.index(tags["fin:c"]), rst)
    stream = MessageStream(write(tmp_path, retimed(order)))
    (req,) = list(stream)
    assert req.error == "connection reset (RST) before FIN" and req.message == json.loads(REQ)
    assert stream.stats.tcp_connections == 1


def test_any_capture_format_the_house_reader_takes(tmp_path):
    """gzip-compressed, raw IP link type: the same messages as plain Ethernet."""
    import gzip
    pkts = S.tcp_connection(C6, SV6, REQ, RESP) + [(1_700_000_001_000_000_000, S.udp_packet(
        "10.1.0.3", "10.1.0.11", 5000, 7000, b'{"hb": 1}'), "")]
    want = [m.to_dict() for m in rebuild(write(tmp_path, pkts))]
    assert len(want) == 3
    gz = tmp_path / "c.pcap.gz"
    gz.write_bytes(gzip.compress(S.pcap_file(pkts)))
    assert [m.to_dict() for m in rebuild(gz)] == want
    assert [m.to_dict() for m in rebuild(write(tmp_path, pkts, name="raw.pcap", linktype=101))] == want
    assert [m.message for m in rebuild(gz, ports=[6000])] == [json.loads(REQ), json.loads(RESP)]


def test_not_received_only_for_receivers_whose_log_was_given(tmp_path):
    a, b, m = ("10.1.0.3", 5000), ("10.1.0.11", 7000), ("10.1.0.12", 7000)
    t0 = 1_700_000_000_000_000_000
    pkts = [(t0 + i, S.udp_packet(src[0], dst[0], src[1], dst[1], json.dumps({"n": i}).encode()), "")
            for i, (src, dst) in enumerate([(a, b), (a, b), (a, m)])]
    rebuilt = rebuild(write(tmp_path, pkts))
    logged = [ev("send", "udp", a, b, {"n": 0}), ev("send", "udp", a, b, {"n": 1}), ev("send", "udp", a, m, {"n": 2}),
              ev("recv", "udp", a, b, {"n": 0})]    # b's log says it got n=0 only; m's log not given
    res = match_logged(rebuilt, logged)
    assert [(e["message"], e["dst"]) for e in res["not_received"]] == [({"n": 1}, list(b))]
    assert res["counts"]["matched"] == 3 and not res["ok"]
