#!/bin/sh
''':'
here=$(dirname -- "$0")
py="$here/../.venv/bin/python"
[ -x "$py" ] || { echo "wirelab: not set up (no .venv); run: sudo make setup" >&2; exit 3; }
exec "$py" "$0" "$@"
'''
"""How long the bundled MapReduce takes on loopback: word count with N workers.

Usage::

    bench/bench_mapreduce.py                     # 4 workers, ~2 MB of text, 3 runs
    bench/bench_mapreduce.py --mb 10 --workers 2 --nmappers 8 --nreducers 4

Generates seeded text (a Zipf-like vocabulary, ~2 MB by default, in 16
files), starts a manager and --workers workers as processes on 127.0.0.1
(:class:`wirelab.apps.mapreduce.localcluster.LocalCluster`), submits the job
--runs times and prints, per run, the seconds from the manager's
``job_started`` to its ``job_done`` (its own clock) and from submit to
``job_done``, and checks the output against ``collections.Counter``. No
root, no emulated network. This prints figures; it is not a test.
"""

import argparse
import collections
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wirelab.apps.mapreduce.localcluster import LocalCluster  # noqa: E402
from wirelab.apps.mapreduce.tasks import partition  # noqa: E402


def write_text(folder, megabytes, files, seed):
    rng = random.Random(seed)
    vocabulary = [f"word{i}" for i in range(20000)]
    weights = [1.0 / (i + 1) for i in range(len(vocabulary))]
    per_file = int(megabytes * 1e6 / files)
    os.makedirs(folder)
    total = 0
    for k in range(files):
        lines, size = [], 0
        while size < per_file:
            line = " ".join(rng.choices(vocabulary, weights, k=12)) + "\n"
            lines.append(line)
            size += len(line)
        with open(os.path.join(folder, f"text{k:03d}.txt"), "w") as f:
            f.writelines(lines)
        total += size
    return total


def check(input_dir, output_dir, nreducers):
    counts = collections.Counter()
    for name in os.listdir(input_dir):
        with open(os.path.join(input_dir, name), "rb") as f:
            counts.update(f.read().split())
    parts = [[] for _ in range(nreducers)]
    for word in sorted(counts):
        parts[partition(word, nreducers)].append(word + b"\t%d\n" % counts[word])
    for r in range(nreducers):
        with open(os.path.join(output_dir, f"part-{r:05d}"), "rb") as f:
            if f.read() != b"".join(parts[r]):
                return False
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=2.0, help="input size in MB (default 2)")
    p.add_argument("--files", type=int, default=16)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--nmappers", type=int, default=8)
    p.add_argument("--nreducers", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="bench-mapreduce-")
    try:
        input_dir = os.path.join(work, "in")
        size = write_text(input_dir, args.mb, args.files, seed=1)
        print(f"input: {size / 1e6:.2f} MB in {args.files} files; {args.workers} workers, "
              f"{args.nmappers} map tasks, {args.nreducers} reduce tasks; cores: {os.cpu_count()}")
        with LocalCluster(work, workers=args.workers, loglevel="warning") as cluster:
            for run in range(args.runs):
                out = os.path.join(work, f"out{run}")
                submitted = time.time()
                cluster.submit(input_dir, out, args.nmappers, args.nreducers)
                done = cluster.wait_for("job_done", 600, count=run + 1)[-1]
                wall = done["t"] - submitted
                ok = check(input_dir, out, args.nreducers)
                print(f"run {run + 1}: job {done['seconds']:.2f} s (manager's clock), "
                      f"submit->done {wall:.2f} s, {size / 1e6 / done['seconds']:.2f} MB/s, "
                      f"output {'== reference' if ok else 'DIFFERS from the reference'}")
            cluster.submit(None, None, 0, 0, shutdown=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
