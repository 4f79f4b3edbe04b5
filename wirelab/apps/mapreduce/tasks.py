"""What a map or reduce task does with files: pure of sockets, used by the worker.

* map task ``t``: run the mapper on each input file (file on stdin, lines on
  stdout); a line's key is the text before its first tab; the line goes to
  partition :func:`partition` (md5 of the key mod ``num_partitions``); each
  partition file ``maptask{t:05d}-part{p:05d}`` is sorted, then moved into the
  output directory (every partition is written, empty ones too).
* reduce task ``r``: merge its (sorted) input files in order (``heapq.merge``),
  pipe them into the reducer, its stdout becomes ``part-{r:05d}``.

Lines are bytes throughout, so the order is byte order (= code point order for
UTF-8) and any encoding passes through.
"""

import contextlib
import glob
import hashlib
import heapq
import os
import shutil
import subprocess
import tempfile


class TaskError(Exception):
    """An executable failed or a file could not be read or written."""


def partition(key, num_partitions):
    """The partition of ``key`` (str or bytes): md5 of its UTF-8 bytes mod n, as in P4."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    return int(hashlib.md5(key).hexdigest(), 16) % num_partitions


def line_key(line):
    """The key of a mapper output line (bytes): up to the first tab, without the newline."""
    return line.split(b"\t", 1)[0].rstrip(b"\n")


def deal(paths, num_tasks):
    """Sorted ``paths`` dealt round-robin to ``num_tasks`` lists (file i -> task i mod n)."""
    tasks = [[] for _ in range(num_tasks)]
    for i, path in enumerate(sorted(paths)):
        tasks[i % num_tasks].append(path)
    return tasks


def map_output_name(task_id, part):
    return f"maptask{task_id:05d}-part{part:05d}"


def reduce_output_name(task_id):
    return f"part-{task_id:05d}"


def reduce_inputs(directory, part):
    """The map outputs of partition ``part`` in ``directory``, sorted by name."""
    return sorted(glob.glob(os.path.join(glob.escape(directory), f"*-part{part:05d}")))


def _check(proc, executable, what):
    if proc.returncode != 0:
        err = (proc.stderr or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise TaskError(f"{executable} exited {proc.returncode} on {what}: {err[0][:200]}")


def run_map(task_id, executable, input_paths, output_directory, num_partitions, timeout=None, local_dir=None):
    """Run one map task; returns the files it put in ``output_directory``.

    Partitions are built in a temporary folder under ``local_dir`` (default:
    the system's), removed when the task ends."""
    with tempfile.TemporaryDirectory(prefix=f"mapreduce-local-task{task_id:05d}-", dir=local_dir) as tmp:
        names = [map_output_name(task_id, p) for p in range(num_partitions)]
        with contextlib.ExitStack() as stack:
            outs = [stack.enter_context(open(os.path.join(tmp, n), "wb")) for n in names]
            for path in input_paths:
                with open(path, "rb") as infile:
                    try:
                        proc = subprocess.run([executable], stdin=infile, capture_output=True,
                                              timeout=timeout, check=False)
                    except subprocess.TimeoutExpired:   # run() has killed it
                        raise TaskError(f"{executable} ran longer than {timeout} s on {path}") from None
                _check(proc, executable, path)
                for line in proc.stdout.splitlines(keepends=True):
                    if not line.endswith(b"\n"):
                        line += b"\n"
                    outs[partition(line_key(line), num_partitions)].write(line)
        moved = []
        for name in names:
            src = os.path.join(tmp, name)
            with open(src, "rb") as f:
                lines = sorted(f.readlines())
            with open(src, "wb") as f:
                f.writelines(lines)
            moved.append(_move_into(src, output_directory, name))
        return moved


def run_reduce(task_id, executable, input_paths, output_directory, timeout=None, local_dir=None):
    """Run one reduce task; returns the path of its ``part-`` file."""
    name = reduce_output_name(task_id)
    with tempfile.TemporaryDirectory(prefix=f"mapreduce-local-task{task_id:05d}-", dir=local_dir) as tmp:
        out_path = os.path.join(tmp, name)
        with contextlib.ExitStack() as stack:
            ins = [stack.enter_context(open(p, "rb")) for p in input_paths]
            out = stack.enter_context(open(out_path, "wb"))
            err = stack.enter_context(tempfile.TemporaryFile(dir=local_dir))
            # stdout straight to the file: nothing to read back while we write stdin.
            proc = subprocess.Popen([executable], stdin=subprocess.PIPE, stdout=out, stderr=err)
            try:
                for line in heapq.merge(*ins):
                    if not line.endswith(b"\n"):
                        line += b"\n"
                    proc.stdin.write(line)
                proc.stdin.close()
            except BrokenPipeError:
                pass   # the reducer stopped reading; its exit code says whether that is an error
            finally:
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise TaskError(f"{executable} ran longer than {timeout} s") from None
            err.seek(0)
            proc.stderr = err.read()
            _check(proc, executable, f"{len(input_paths)} inputs")
        return _move_into(out_path, output_directory, name)


def _move_into(src, directory, name):
    # Copy to a hidden name then rename: a reader never sees half a file, and
    # a worker redoing a reassigned task replaces the file whole.
    dst = os.path.join(directory, name)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst
