"""A hung mapper or reducer is killed at the worker's task timeout; the task fails with one line."""

import os
import stat

import pytest

from wirelab.apps.mapreduce.tasks import TaskError, run_map, run_reduce


@pytest.fixture
def hung(tmp_path):
    exe = tmp_path / "hung.sh"
    exe.write_text("#!/bin/sh\nexec sleep 60\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    data = tmp_path / "in.txt"
    data.write_text("a b c\n")
    out = tmp_path / "out"
    out.mkdir()
    return str(exe), str(data), str(out)


def test_hung_mapper_is_killed_at_the_timeout(hung, tmp_path):
    exe, data, out = hung
    with pytest.raises(TaskError, match=r"ran longer than 0.3 s on .*in.txt"):
        run_map(0, exe, [data], out, 2, timeout=0.3, local_dir=str(tmp_path))
    assert os.listdir(out) == []


def test_hung_reducer_is_killed_at_the_timeout(hung, tmp_path):
    exe, data, out = hung
    with pytest.raises(TaskError, match=r"ran longer than 0.3 s"):
        run_reduce(0, exe, [data], out, timeout=0.3, local_dir=str(tmp_path))
    assert os.listdir(out) == []
