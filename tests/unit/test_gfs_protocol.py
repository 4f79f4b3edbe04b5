"""The heartbeat message (what parse accepts and the reason it gives for the
rest), the event log, and loss / duplication / reordering counted from
sequence numbers on crafted sequences."""

import json

import pytest

from wirelab.apps.gfs import protocol
from wirelab.apps.gfs.sequence import DUPLICATE, FRESH, LATE, SequenceTracker, analyse, missing_runs, runs_at_least


def test_a_heartbeat_round_trips():
    msg = protocol.heartbeat("w1", 17, 1718000000.25)
    data = protocol.encode(msg)
    assert data == b'{"message_type":"heartbeat","chunkserver":"w1","seq":17,"sent_at":1718000000.25}'
    assert protocol.parse(data) == (msg, None)
    # extra keys are ignored (a later version may add some)
    assert protocol.parse(protocol.encode({**msg, "load": 3}))[1] is None


@pytest.mark.parametrize("data,reason", [
    (b"{bad", "malformed JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "not a JSON object: list"),
    (b'"heartbeat"', "not a JSON object: str"),
    (b"null", "not a JSON object: NoneType"),
    (b'{"chunkserver": "w1", "seq": 1, "sent_at": 1}', "missing field message_type"),
    (b'{"message_type": "chunk_report", "chunkserver": "w1"}', "unknown message_type"),
    (b'{"message_type": "heartbeat", "seq": 1, "sent_at": 1}', "missing field chunkserver"),
    (b'{"message_type": "heartbeat", "chunkserver": "w1", "sent_at": 1}', "missing field seq"),
    (b'{"message_type": "heartbeat", "chunkserver": "w1", "seq": 1}', "missing field sent_at"),
    (b'{"message_type": "heartbeat", "chunkserver": "", "seq": 1, "sent_at": 1}', "bad field chunkserver"),
    (b'{"message_type": "heartbeat", "chunkserver": 7, "seq": 1, "sent_at": 1}', "bad field chunkserver"),
    (b'{"message_type": "heartbeat", "chunkserver": "w1", "seq": -1, "sent_at": 1}', "bad field seq"),
    (b'{"message_type": "heartbeat", "chunkserver": "w1", "seq": 1.5, "sent_at": 1}', "bad field seq"),
    (b'{"message_type": "heartbeat", "chunkserver": "w1", "seq": true, "sent_at": 1}', "bad field seq"),
    (b'{"message_type": "heartbeat", "chunkserver": "w1", "seq": 9223372036854775808, "sent_at": 1}',
     "bad field seq"),
    (b'{"message_type": "heartbeat", "chunkserver": "w1", "seq": 1, "sent_at": NaN}', "bad field sent_at"),
    (b'{"message_type": "heartbeat", "chunkserver": "w1", "seq": 1, "sent_at": "now"}', "bad field sent_at"),
    (b"[" * 1400 + b"]" * 0, "malformed JSON"),
    (b" " * (protocol.MAX_MESSAGE_BYTES + 1), "oversize: 1473 bytes > 1472"),
])
def test_parse_names_what_is_wrong(data, reason):
    message, why = protocol.parse(data)
    assert message is None and why.startswith(reason), why


def test_deep_nesting_is_refused_not_a_crash():
    half = protocol.MAX_MESSAGE_BYTES // 2
    assert protocol.parse(b"[" * half + b"]" * half)[1] == "not a JSON object: list"
    assert protocol.parse(b"[" * half + b"]" * (half - 1))[1].startswith("malformed JSON")
    assert protocol.parse(b"[" * 1000 + b"]" * 1000)[1].startswith("oversize")


def test_event_log_writes_flushed_lines_and_skips_a_torn_tail(tmp_path):
    path = tmp_path / "log.jsonl"
    with protocol.EventLog(str(path)) as log:
        log.message(1.5, "send", "udp", ("10.1.0.11", 4000), ("10.1.0.2", 7000), protocol.heartbeat("w1", 0, 1.5))
        # flushed: a reader sees the line before the log is closed
        assert json.loads(path.read_text().splitlines()[0])["event"] == "send"
        log.write(2.0, "state", chunkserver="w1", detector="phi", state="dead", phi=8.1)
    with open(path, "a") as f:
        f.write('{"t": 3, "event": "re')      # the writer was killed mid-line
    events = protocol.read_log(str(path))
    assert [e["event"] for e in events] == ["send", "state"]
    assert events[0] == {"t": 1.5, "event": "send", "transport": "udp", "src": ["10.1.0.11", 4000],
                         "dst": ["10.1.0.2", 7000], "message": protocol.heartbeat("w1", 0, 1.5)}


def test_tracker_classifies_fresh_late_duplicate():
    t = SequenceTracker()
    assert [t.classify(s) for s in (0, 2, 1, 2, 3, 0, 5)] == [FRESH, FRESH, LATE, DUPLICATE, FRESH, DUPLICATE, FRESH]
    assert t.counts == {FRESH: 4, LATE: 1, DUPLICATE: 2} and t.highest == 5


def test_analyse_counts_loss_duplication_reordering():
    # sent 0..9; 3 and 7 lost; 5 duplicated; 2 overtaken by 4; 8 overtaken by 9
    got = analyse([0, 1, 4, 2, 5, 5, 6, 9, 8], 10)
    assert got["lost"] == 2 and got["lost_seqs"] == [3, 7]
    assert got["duplicates"] == 1 and got["copies"][5] == 2
    assert got["reordered"] == 2 and got["reordered_seqs"] == [2, 8]
    assert got["received"] == 9 and got["unique"] == 8 and got["unexpected"] == []
    assert got["loss_runs"] == [[3, 1], [7, 1]]


def test_loss_runs_and_unexpected_numbers():
    got = analyse([0, 4, 9, 42], 10)
    assert got["loss_runs"] == [[1, 3], [5, 4]]
    assert runs_at_least(got["loss_runs"], 3) == 2 and runs_at_least(got["loss_runs"], 4) == 1
    assert got["unexpected"] == [42]
    assert missing_runs([]) == []
    # sent as a set: numbers whose send failed are not expected
    assert analyse([0, 2], {0, 2})["lost"] == 0
