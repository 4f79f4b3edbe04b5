"""wirelab.observe.messages with framing="lines" (wirelab.observe.msglines): JSON
Lines over one TCP stream, rebuilt line by line from captures the tests write
byte by byte: lines split over segments and several in one, drops and
retransmissions, network copies, reordering, a hole (the line it falls in is
an error, the next ones are whole), an unterminated last line, no FIN, RST,
no SYN, snap length; the comparison with app logs as a multiset; the CLI's
--framing lines; and a property test over random segmentations and orders."""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirelab.errors import ConfigError
from wirelab.observe import messages
from wirelab.observe import msgsynth as S
from wirelab.observe.messages import MessageStream, match_logged, rebuild
from wirelab.observe.msglines import first_arrivals, split_lines

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C, SV = ("10.1.0.2", 41234), ("10.1.0.11", 7003)
ISN = 1000
# 18 lines of 29..69 bytes (826 in all); with mss=100 a segment holds parts
# of two to four lines and most lines straddle two segments.
MSGS = [{"seq": i, "cs": "w1", "pad": "p" * (i * 7 % 40)} for i in range(18)]
LINES = [json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in MSGS]
STREAM = b"".join(LINES)
STARTS = [sum(len(x) for x in LINES[:i]) for i in range(len(LINES) + 1)]


@pytest.fixture(autouse=True, params=["vectorised", "per-segment"])
def clean_path(request, monkeypatch):
    """Every test on both paths (clean streams in one step, or segment by segment)."""
    monkeypatch.setattr(messages, "CLEAN_MIN_ROWS", 1 if request.param == "vectorised" else 1 << 62)


def write(tmp_path, pkts, name="l.pcap", **kw):
    path = tmp_path / name
    path.write_bytes(S.pcap_file(pkts, **kw))
    return path


def retimed(pkts, step=100_000, t0=1_700_000_000_000_000_000):
    return [(t0 + i * step, p[1], p[2]) for i, p in enumerate(pkts)]


def conn(stream=STREAM, mss=100, response=b""):
    return S.tcp_connection(C, SV, stream, response, isn_c=ISN, mss=mss)


def from_client(msgs):
    return [m for m in msgs if tuple(m.src) == C]


def seg_of(offset, mss=100):
    """Tag of the data segment holding stream byte ``offset``."""
    return f"c2s:{offset // mss}"


def time_of(order, tag):
    return next(p[0] for p in order if p[2] == tag) / 1e9


def test_lines_across_segments_and_several_in_one(tmp_path):
    pkts = conn()
    msgs = from_client(rebuild(write(tmp_path, pkts), framing="lines"))
    assert [m.message for m in msgs] == MSGS and all(m.error is None for m in msgs)
    assert [m.bytes for m in msgs] == [len(x) for x in LINES]
    assert sum(1 for i in range(len(LINES)) if seg_of(STARTS[i]) != seg_of(STARTS[i + 1] - 1)) >= 3
    for i, m in enumerate(msgs):
        # t: the segment holding the first byte; t_end: the one holding the newline
        assert m.t == pytest.approx(time_of(pkts, seg_of(STARTS[i])))
        assert m.t_end == pytest.approx(time_of(pkts, seg_of(STARTS[i + 1] - 1)))
        assert m.frame == [p[2] for p in pkts].index(seg_of(STARTS[i])) + 1
        assert (m.retransmitted_segments, m.duplicate_segments, m.out_of_order_segments) == (0, 0, 0)
    # the connection framing of the same capture: one value per direction, not JSON
    (whole,) = from_client(rebuild(write(tmp_path, pkts)))
    assert whole.message is None and whole.error.startswith("not JSON: Extra data")


def test_drop_retransmission_copy_and_reordering(tmp_path):
    """Receiver side: c2s:1 lost, re-sent after c2s:3; c2s:4 copied by the network;
    c2s:5 and c2s:6 swapped; the sender re-sends c2s:0 (a new IP ID)."""
    pkts = conn()
    tags = {p[2]: p for p in pkts}
    resent0 = (0, S.tcp_packet(C[0], SV[0], C[1], SV[1], ISN + 1, 5001, S.ACK | S.PSH, STREAM[:100], ip_id=900), "re0")
    order = [p for p in pkts if p[2] != "c2s:1"]
    order.insert(order.index(tags["c2s:3"]) + 1, tags["c2s:1"])
    order.insert(order.index(tags["c2s:4"]) + 1, tags["c2s:4"])
    a, b = order.index(tags["c2s:5"]), order.index(tags["c2s:6"])
    order[a], order[b] = order[b], order[a]
    order.insert(order.index(tags["c2s:2"]), resent0)
    order = retimed(order)
    stream = MessageStream(write(tmp_path, order), framing="lines")
    msgs = from_client(list(stream))
    assert [m.message for m in msgs] == MSGS and all(m.error is None for m in msgs)
    by_first_byte = {i: seg_of(STARTS[i]) for i in range(len(LINES))}
    for i, m in enumerate(msgs):
        # each line's time is the first arrival of its first byte, wherever it came in the capture
        assert m.t == pytest.approx(time_of(order, by_first_byte[i]))
    # what TCP hid, counted for the line holding each segment's first byte
    line_at = lambda off: max(i for i in range(len(LINES)) if STARTS[i] <= off)  # noqa: E731
    want = {"retransmitted": {line_at(0)}, "duplicate": {line_at(400)}, "out_of_order": {line_at(200), line_at(300),
                                                                                          line_at(600)}}
    got = {"retransmitted": {i for i, m in enumerate(msgs) if m.retransmitted_segments},
           "duplicate": {i for i, m in enumerate(msgs) if m.duplicate_segments},
           "out_of_order": {i for i, m in enumerate(msgs) if m.out_of_order_segments}}
    assert got == want
    st_ = stream.stats
    assert (st_.retransmitted_segments, st_.duplicate_segments, st_.out_of_order_segments) == (1, 1, 3)
    assert sum(m.out_of_order_segments for m in msgs) == 3
    assert st_.messages["tcp"] == len(MSGS) and not st_.errors


def test_hole_is_one_error_then_resync(tmp_path):
    """c2s:3 (bytes 300..399) never captured: the line it starts in, up to the first
    newline after it, is one error; the lines before and after are whole."""
    pkts = [p for p in conn() if p[2] != "c2s:3"]
    msgs = from_client(rebuild(write(tmp_path, pkts), framing="lines"))
    first_bad = max(i for i in range(len(LINES)) if STARTS[i] <= 300)
    resync = min(i for i in range(len(LINES) + 1) if STARTS[i] > 400)   # the first line starting after the hole
    assert [m.message for m in msgs[:first_bad]] == MSGS[:first_bad]
    bad = msgs[first_bad]
    assert bad.message is None and bad.error == "truncated stream: gap at byte 300"
    assert bad.bytes == STARTS[resync] - STARTS[first_bad]
    assert [m.message for m in msgs[first_bad + 1:]] == MSGS[resync:]
    assert all(m.error is None for m in msgs if m is not bad)
    assert len(msgs) == first_bad + 1 + len(MSGS) - resync


def test_hole_at_the_end_and_missing_lines_in_a_segment(tmp_path):
    """One line per segment (every line 80 bytes, mss=80): a lost segment holding
    exactly line 4 spoils lines 4 and 5 (byte 399, lost, might not have been a
    newline: the framing is found again at line 5's newline); the last segment
    lost: the tail is an error."""
    stream = b"".join(x.ljust(80, b" ")[:-1] + b"\n" for x in (l.rstrip(b"\n") for l in LINES))
    pkts = conn(stream, mss=80)
    msgs = from_client(rebuild(write(tmp_path, [p for p in pkts if p[2] != "c2s:4"]), framing="lines"))
    assert [m.message for m in msgs] == MSGS[:4] + [None] + MSGS[6:]
    assert msgs[4].error == "truncated stream: gap at byte 320" and msgs[4].bytes == 160
    n = len(MSGS) - 1
    msgs = from_client(rebuild(write(tmp_path, [p for p in pkts if p[2] != f"c2s:{n}"]), framing="lines"))
    assert [m.message for m in msgs] == MSGS[:n] + [None]
    assert msgs[n].error == f"truncated stream: gap at byte {80 * n}" and msgs[n].bytes == 80
    # with no byte of it captured, it takes the time of the last byte before it
    assert msgs[n].t == msgs[n - 1].t_end


def test_unterminated_last_line(tmp_path):
    ok = from_client(rebuild(write(tmp_path, conn(STREAM + b'{"last": true}')), framing="lines"))
    assert ok[-1].message == {"last": True} and ok[-1].error is None and ok[-1].bytes == 14
    cut = from_client(rebuild(write(tmp_path, conn(STREAM + b'{"last": tr')), framing="lines"))
    assert cut[-1].message is None and cut[-1].error.startswith("not JSON: ")
    assert [m.message for m in cut[:-1]] == MSGS


def test_blank_lines_crlf_and_no_fin(tmp_path):
    stream = b'{"a": 1}\r\n\n  \n{"b": 2}\n{"c": '
    pkts = [p for p in conn(stream) if p[2] != "fin:c"]
    msgs = from_client(rebuild(write(tmp_path, pkts), framing="lines"))
    assert [(m.message, m.error) for m in msgs] == [
        ({"a": 1}, None), ({"b": 2}, None),
        (None, "connection never closed; not JSON: Expecting value: line 1 column 7 (char 6)")]
    assert [m.bytes for m in msgs] == [10, 9, 6]


def test_reset_and_no_syn(tmp_path):
    pkts = conn(STREAM + b'{"tail": 1}')
    tags = {p[2]: p for p in pkts}
    rst = (0, S.tcp_packet(C[0], SV[0], C[1], SV[1], ISN + 1 + len(STREAM) + 11, 0, S.RST), "rst")
    order = [p for p in pkts if p[2] != "fin:c" and not p[2].startswith(("s2c", "fin:s", "ack:fin"))]
    msgs = from_client(rebuild(write(tmp_path, retimed(order + [rst])), framing="lines"))
    assert msgs[-1].message == {"tail": 1} and msgs[-1].error == "connection reset (RST) before FIN"
    assert all(m.error is None for m in msgs[:-1]) and len(msgs) == len(MSGS) + 1
    # capture started in the middle of line 2 (at segment 1): the first piece may be a tail
    late = pkts[pkts.index(tags["c2s:1"]):]
    msgs = from_client(rebuild(write(tmp_path, late), framing="lines"))
    first_whole = min(i for i in range(len(LINES)) if STARTS[i] > 100)
    assert msgs[0].error.endswith("no SYN: start of stream not captured")
    assert [m.message for m in msgs[1:]] == MSGS[first_whole:] + [{"tail": 1}]
    assert all(m.error is None for m in msgs[1:])


def test_snap_length(tmp_path):
    """Every frame cut at 120 bytes (54 of headers, 66 of payload): the lines wholly
    inside segment 0's first 66 bytes are whole, everything from byte 66 is one error."""
    import struct
    raw = S.pcap_file(conn())
    out, off = [raw[:24]], 24
    while off < len(raw):
        s, f, incl, orig = struct.unpack_from("<IIII", raw, off)
        keep = min(incl, 120)
        out.append(struct.pack("<IIII", s, f, keep, orig) + raw[off + 16:off + 16 + keep])
        off += 16 + incl
    path = tmp_path / "snap.pcap"
    path.write_bytes(b"".join(out))
    msgs = from_client(rebuild(path, framing="lines"))
    whole = [i for i in range(len(LINES)) if STARTS[i + 1] <= 66]
    assert whole
    assert [m.message for m in msgs] == [MSGS[i] for i in whole] + [None]
    assert msgs[-1].error == "truncated stream: gap at byte 66 (packets cut by the capture's snap length)"
    assert msgs[-1].bytes == len(STREAM) - STARTS[len(whole)]


def test_match_logged_counts_lines_as_a_multiset(tmp_path):
    """The same heartbeat line sent twice is two messages; a line the receiver did not log is not_received."""
    hb = {"message_type": "heartbeat", "chunkserver": "w1", "seq": 0}
    stream = b"".join(json.dumps(m).encode() + b"\n" for m in (hb, hb, MSGS[1]))
    rebuilt = rebuild(write(tmp_path, conn(stream, response=b'{"ok": 1}\n')), framing="lines")
    ev = lambda kind, m, s=C, d=SV: {"t": 0, "event": kind, "transport": "tcp", "src": list(s),  # noqa: E731
                                     "dst": list(d), "message": m}
    logs = [ev("send", hb), ev("send", hb), ev("send", MSGS[1]), ev("recv", hb), ev("recv", hb), ev("recv", MSGS[1]),
            ev("send", {"ok": 1}, SV, C)]
    res = match_logged(rebuilt, logs)
    assert res["ok"] and res["counts"]["matched"] == 4
    res = match_logged(rebuilt, logs[:4] + logs[5:])
    assert not res["ok"] and [(e["message"], e["count"]) for e in res["not_received"]] == [(hb, 1)]
    res = match_logged(rebuilt, logs[:1] + logs[2:])
    assert [(e["message"], e["count"]) for e in res["duplicates"]] == [(hb, 1)]


def test_bad_framing_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="framing must be one of connection, lines"):
        MessageStream(write(tmp_path, conn()), framing="ndjson")


def test_cli_framing_lines(tmp_path):
    path = write(tmp_path, conn())
    log = tmp_path / "server.jsonl"
    log.write_text("".join(json.dumps({"t": 0, "event": "recv", "transport": "tcp", "src": list(C),
                                       "dst": list(SV), "message": m}) + "\n" for m in MSGS))
    done = subprocess.run([sys.executable, "-m", "wirelab", "messages", str(path), "--framing", "lines",
                           "--logs", str(log)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = [json.loads(x) for x in done.stdout.splitlines()]
    assert [d["message"] for d in out if d["src"] == list(C)] == MSGS
    assert "18 messages (18 TCP)" in done.stderr and "logs vs capture: same: 18 matched" in done.stderr
    done = subprocess.run([sys.executable, "-m", "wirelab", "messages", str(path), "--logs", str(log)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 7 and "1 with an error (1 not JSON)" in done.stderr


# -- the pure parts ----------------------------------------------------------------------------
def test_first_arrivals_keeps_the_earliest_for_every_byte():
    # in capture order: 100..200 at t=1, 0..150 at t=2, 0..100 again at t=3, 300..400 at t=4, 150..350 at t=5
    got = first_arrivals([(100, 200, 1, 1), (0, 150, 2, 2), (0, 100, 3, 3), (300, 400, 4, 4), (150, 350, 5, 5),
                          (-20, 10, 6, 6)])
    assert got == [(0, 100, 2, 2), (100, 200, 1, 1), (200, 300, 5, 5), (300, 400, 4, 4)]


def test_split_lines_holes_and_runs():
    runs = [(0, b'{"a":1}\n{"b"'), (12, b':2}\n{"c":3}\n'), (30, b'x}\n{"d":4}\n'), (50, b"zz")]
    assert split_lines(runs, 56) == [
        (0, 8, b'{"a":1}\n', None), (8, 16, b'{"b":2}\n', None), (16, 24, b'{"c":3}\n', None),
        (24, 33, None, 24), (33, 41, b'{"d":4}\n', None), (41, 56, None, 41)]


# -- property: any segmentation, any order, any copies: the same lines --------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=1, max_value=12), data=st.data(), isn=st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_any_segmentation_order_and_copies_rebuild_every_line(tmp_path, n, data, isn):
    msgs = [{"seq": i, "body": "b" * data.draw(st.integers(min_value=0, max_value=90))} for i in range(n)]
    payload = b"".join(json.dumps(m).encode() + b"\n" for m in msgs)
    cuts, at = [], 0
    while at < len(payload):
        size = data.draw(st.integers(min_value=1, max_value=150))
        back = data.draw(st.integers(min_value=0, max_value=min(at, 30)))
        cuts.append((at - back, min(at + size, len(payload))))
        at = min(at + size, len(payload))
    segs = [S.tcp_packet(C[0], SV[0], C[1], SV[1], isn + 1 + a, 1, S.ACK, payload[a:b], ip_id=i)
            for i, (a, b) in enumerate(cuts)]
    fin = S.tcp_packet(C[0], SV[0], C[1], SV[1], isn + 1 + len(payload), 1, S.ACK | S.FIN, ip_id=9999)
    copies = data.draw(st.lists(st.sampled_from(segs), max_size=5))
    order = data.draw(st.permutations(segs + [fin] + copies))
    syn = S.tcp_packet(C[0], SV[0], C[1], SV[1], isn, 0, S.SYN, ip_id=0)
    pkts = retimed([(0, p, "") for p in [syn] + list(order)])
    stream = MessageStream(write(tmp_path, pkts, name="prop.pcap"), framing="lines")
    got = list(stream)
    assert [m.message for m in got] == msgs and all(m.error is None for m in got)
    assert sum(m.bytes for m in got) == len(payload)
    st_ = stream.stats
    for field in ("retransmitted_segments", "duplicate_segments", "out_of_order_segments"):
        assert sum(getattr(m, field) for m in got) == getattr(st_, field)
    # the same stream as one value per connection: the same segments hidden
    (whole,) = rebuild(write(tmp_path, pkts, name="prop.pcap"))
    assert (whole.retransmitted_segments, whole.duplicate_segments, whole.out_of_order_segments) == (
        st_.retransmitted_segments, st_.duplicate_segments, st_.out_of_order_segments)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=1, max_value=10), data=st.data())
def test_holes_give_errors_never_garbage(tmp_path, n, data):
    """Segments lost for good: a line whose bytes and the newline before it were
    captured is whole; every other line falls in an error record; no record is a
    value that was not sent, and the records tile the stream."""
    msgs = [{"seq": i, "body": "b" * data.draw(st.integers(min_value=0, max_value=60))} for i in range(n)]
    lines = [json.dumps(m).encode() + b"\n" for m in msgs]
    payload = b"".join(lines)
    starts = [sum(len(x) for x in lines[:i]) for i in range(n + 1)]
    cuts, at = [], 0
    while at < len(payload):
        size = data.draw(st.integers(min_value=1, max_value=80))
        cuts.append((at, min(at + size, len(payload))))
        at += size
    lost = data.draw(st.sets(st.integers(min_value=0, max_value=len(cuts) - 1), max_size=3))
    kept = [c for i, c in enumerate(cuts) if i not in lost]
    have = set()
    for a, b in kept:
        have.update(range(a, b))
    segs = [S.tcp_packet(C[0], SV[0], C[1], SV[1], 1001 + a, 1, S.ACK, payload[a:b], ip_id=i)
            for i, (a, b) in enumerate(kept)]
    fin = S.tcp_packet(C[0], SV[0], C[1], SV[1], 1001 + len(payload), 1, S.ACK | S.FIN, ip_id=9999)
    syn = S.tcp_packet(C[0], SV[0], C[1], SV[1], 1000, 0, S.SYN, ip_id=0)
    order = data.draw(st.permutations(segs + [fin]))
    got = list(MessageStream(write(tmp_path, retimed([(0, p, "") for p in [syn] + list(order)]), name="holes.pcap"),
                             framing="lines"))
    assert sum(m.bytes for m in got) == len(payload)
    offsets = [sum(m.bytes for m in got[:j]) for j in range(len(got))]
    whole = {i for i in range(n) if set(range(starts[i] - (i > 0), starts[i + 1])) <= have}
    found = set()
    for off, m in zip(offsets, got):
        if m.message is None:
            assert m.error.startswith("truncated stream: gap at byte ")
            continue
        assert m.error is None
        i = starts.index(off)
        assert m.message == msgs[i] and m.bytes == len(lines[i])
        found.add(i)
    assert found == whole
