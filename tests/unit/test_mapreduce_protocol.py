"""The MapReduce protocol table, framing, partitioning and the word count job, without sockets."""

import collections
import hashlib
import json
import os
import random
import stat
import subprocess

import pytest

from wirelab.apps.mapreduce import protocol, tasks, wire
from wirelab.apps.mapreduce.protocol import check_message
from wirelab.apps.mapreduce.submit import WORDCOUNT_MAP, WORDCOUNT_REDUCE

VALID = {
    "register": {"message_type": "register", "worker_host": "10.0.0.2", "worker_port": 6001},
    "register_ack": {"message_type": "register_ack"},
    "new_manager_job": {"message_type": "new_manager_job", "input_directory": "/in",
                        "output_directory": "/out", "mapper_executable": "/m", "reducer_executable": "/r",
                        "num_mappers": 2, "num_reducers": 3},
    "new_map_task": {"message_type": "new_map_task", "task_id": 0, "executable": "/m",
                     "input_paths": ["/in/a"], "output_directory": "/tmp/x", "num_partitions": 3,
                     "worker_host": "10.0.0.2", "worker_port": 6001},
    "new_reduce_task": {"message_type": "new_reduce_task", "task_id": 1, "executable": "/r",
                        "input_paths": [], "output_directory": "/out",
                        "worker_host": "10.0.0.2", "worker_port": 6001},
    "finished": {"message_type": "finished", "task_id": 4, "worker_host": "10.0.0.2", "worker_port": 6001},
    "heartbeat": {"message_type": "heartbeat", "worker_host": "10.0.0.2", "worker_port": 6001},
    "shutdown": {"message_type": "shutdown"},
}


def test_every_type_in_the_table_has_a_valid_example():
    assert set(VALID) == set(protocol.MESSAGES)
    for kind, msg in VALID.items():
        spec = protocol.MESSAGES[kind]
        assert check_message(msg) == ([], []), kind
        assert check_message(msg, transport=spec.transport, receiver=spec.receivers[0]) == ([], [])


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_required_field_missing_is_an_error(kind):
    for field in protocol.MESSAGES[kind].required:
        msg = {k: v for k, v in VALID[kind].items() if k != field}
        errors, _ = check_message(msg)
        assert errors == [f"{kind} without {field}"]


def test_wrong_types_unknown_types_and_non_objects():
    assert check_message([1, 2])[0] == ["not a JSON object but list"]
    assert check_message({"worker_port": 1})[0] == ["no message_type (string)"]
    assert check_message({"message_type": "gossip"})[0] == ["unknown message_type 'gossip'"]
    bad_port = dict(VALID["register"], worker_port="6001")
    assert check_message(bad_port)[0] == ["worker_port must be an integer, got str"]
    assert check_message(dict(VALID["register"], worker_port=True))[0]
    assert check_message(dict(VALID["register"], worker_port=70000))[0]
    assert check_message(dict(VALID["new_manager_job"], num_reducers=0))[0]
    assert check_message(dict(VALID["new_map_task"], input_paths="/in/a"))[0]
    assert check_message(dict(VALID["finished"], task_id=-1))[0]


def test_unknown_fields_warn_and_direction_and_transport_are_checked():
    errors, warnings = check_message(dict(VALID["heartbeat"], seq=3))
    assert errors == [] and warnings == ["heartbeat with unknown fields: seq"]
    assert check_message(dict(VALID["register_ack"], worker_host="h", worker_port=1)) == ([], [])
    assert check_message(VALID["heartbeat"], transport="tcp")[0] == ["heartbeat belongs on udp, came on tcp"]
    assert check_message(VALID["new_map_task"], receiver="manager")[0] == ["a manager never receives new_map_task"]
    assert check_message(VALID["shutdown"], receiver="worker") == ([], [])


def test_decode_gives_an_object_or_a_reason():
    assert wire.decode(wire.encode(VALID["finished"])) == (VALID["finished"], None)
    assert wire.decode(b"")[1] == "empty message"
    assert wire.decode(b"\xff\xfe")[1].startswith("not UTF-8")
    assert wire.decode(b"{\"a\":")[1].startswith("not JSON")
    assert wire.decode(b"[" * 100000)[1].startswith("not JSON")
    assert wire.decode(b"1" * 10000)[1].startswith("not JSON")   # beyond int() digit limit
    assert wire.decode(b"[1]") == ([1], None)


def test_partition_is_md5_mod_n_and_stable():
    assert tasks.partition("hello", 7) == int(hashlib.md5(b"hello").hexdigest(), 16) % 7
    assert tasks.partition(b"hello", 7) == tasks.partition("hello", 7)
    assert tasks.partition("", 1) == 0
    # Golden values: the same key goes to the same partition on every machine and run.
    assert [tasks.partition(w, 3) for w in ("a", "b", "the", "mapreduce")] == [
        int(hashlib.md5(w.encode()).hexdigest(), 16) % 3 for w in ("a", "b", "the", "mapreduce")]
    assert tasks.partition("the", 10) == 0x8fc42c6ddf9966db3b09e84365034357 % 10
    assert tasks.line_key(b"k\tv\tw\n") == b"k" and tasks.line_key(b"solo\n") == b"solo"


def test_round_robin_deal_of_sorted_files():
    files = [f"/in/f{i}" for i in (3, 0, 4, 1, 2)]
    assert tasks.deal(files, 2) == [["/in/f0", "/in/f2", "/in/f4"], ["/in/f1", "/in/f3"]]
    assert tasks.deal(files, 7)[5:] == [[], []]
    assert tasks.deal([], 2) == [[], []]


def test_wordcount_executables_are_executable_with_a_shebang():
    for path in (WORDCOUNT_MAP, WORDCOUNT_REDUCE):
        assert os.stat(path).st_mode & stat.S_IXUSR
        with open(path, "rb") as f:
            assert f.readline() == b"#!/usr/bin/env python3\n"
    listing = subprocess.run(["git", "ls-files", "-s", WORDCOUNT_MAP, WORDCOUNT_REDUCE],
                             capture_output=True, text=True, cwd=os.path.dirname(WORDCOUNT_MAP))
    assert len(listing.stdout.splitlines()) == 2
    for line in listing.stdout.splitlines():   # committed with the executable bit
        assert line.startswith("100755 "), line


def make_inputs(folder, nfiles, seed, lines=200):
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(300)] + ["the", "a", "ab", "b", "über", "日本"]
    os.makedirs(folder, exist_ok=True)
    for i in range(nfiles):
        with open(os.path.join(folder, f"input{i:02d}.txt"), "w", encoding="utf-8") as f:
            for _ in range(lines):
                f.write(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 12))) + "\n")


def reference_parts(folder, num_reducers):
    """The expected part files: per partition, sorted ``word\\tcount`` lines."""
    counts = collections.Counter()
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            counts.update(f.read().split())
    parts = [[] for _ in range(num_reducers)]
    for word in sorted(counts):
        parts[tasks.partition(word, num_reducers)].append(word + b"\t%d\n" % counts[word])
    return [b"".join(lines) for lines in parts]


def test_map_and_reduce_tasks_give_the_word_count_reference(tmp_path):
    make_inputs(tmp_path / "in", 5, seed=3)
    inputs = sorted(str(p) for p in (tmp_path / "in").iterdir())
    shared, out = tmp_path / "shared", tmp_path / "out"
    shared.mkdir()
    out.mkdir()
    for t, paths in enumerate(tasks.deal(inputs, 3)):
        made = tasks.run_map(t, WORDCOUNT_MAP, paths, str(shared), 4)
        assert [os.path.basename(m) for m in made] == [f"maptask{t:05d}-part{p:05d}" for p in range(4)]
        for m in made:
            lines = open(m, "rb").readlines()
            assert lines == sorted(lines)
            assert all(tasks.partition(tasks.line_key(l), 4) == int(m[-5:]) for l in lines)
    for r in range(4):
        ins = tasks.reduce_inputs(str(shared), r)
        assert len(ins) == 3
        tasks.run_reduce(r, WORDCOUNT_REDUCE, ins, str(out))
    got = [(out / f"part-{r:05d}").read_bytes() for r in range(4)]
    assert got == reference_parts(str(tmp_path / "in"), 4)
    assert sorted(os.listdir(out)) == [f"part-{r:05d}" for r in range(4)]   # no temporary left


def test_a_failing_mapper_is_a_task_error(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\necho oops >&2\nexit 3\n")
    bad.chmod(0o755)
    (tmp_path / "in.txt").write_text("x\n")
    with pytest.raises(tasks.TaskError, match="exited 3 .*oops"):
        tasks.run_map(0, str(bad), [str(tmp_path / "in.txt")], str(tmp_path), 2)
    with pytest.raises(tasks.TaskError, match="exited 3"):
        tasks.run_reduce(0, str(bad), [str(tmp_path / "in.txt")], str(tmp_path))


def test_event_log_lines_are_json_with_the_house_fields(tmp_path):
    from wirelab.apps.mapreduce.events import EventLog, read_events
    log = EventLog(str(tmp_path / "e.jsonl"))
    log.message("send", "tcp", ("10.0.0.1", 40000), ("10.0.0.2", 6001), VALID["shutdown"])
    log.dropped("not JSON", ("10.0.0.3", 5), b"\x00" * 100)
    log.close()
    first, second = read_events(str(tmp_path / "e.jsonl"))
    assert first["event"] == "send" and first["src"] == ["10.0.0.1", 40000] and first["dst"] == ["10.0.0.2", 6001]
    assert first["message"] == VALID["shutdown"] and isinstance(first["t"], float)
    assert second["first_bytes"] == repr(b"\x00" * 64) and second["peer"] == ["10.0.0.3", 5]
    json.dumps(second)
