"""The main job: every experiment on its default topology, then one report.

``wirelab suite`` (``bash scripts/demo.sh``, ``make demo``) runs each experiment
of the registry (``experiments/<name>.py``, in teaching order), each in its own
process (those that need sch_netem move themselves into User-Mode Linux when
the kernel lacks it), with results in ``results/<name>/<UTC time>/``. It then
writes ``results/report/<UTC time>/`` -- ``summary.json``, ``report.md`` and
``index.html`` (one self-contained page, plots embedded) -- and prints a
summary table. Exit status 0 when every experiment's claims hold.
"""

import argparse
import math
import os
import signal
import subprocess
import sys
import time

from wirelab.errors import Interrupted, NotRootError
from wirelab.experiment import registry, report
from wirelab.experiment.core import REPO, RESULTS_ROOT, new_results_dir
from wirelab.net.testbed import signals_raise

# After a timeout (or our own interruption), how long an experiment gets to tear
# its network down after SIGTERM before it is killed.
STOP_GRACE_S = 60

# Beyond the defaults, the report shows goodput against loss beside the Mathis model.
SUITE_ARGS = {"tcp_recovery": ["--sweep-loss", "0.5", "1", "2", "5"]}


def run_one(name, out_dir, extra=(), timeout=None):
    """Run one experiment; on timeout or interruption stop it with SIGTERM (it
    then tears its network down, UML guest included) and SIGKILL only after
    :data:`STOP_GRACE_S`. Returns (exit code or None on timeout, seconds)."""
    argv = [sys.executable, registry.script(name), "--out", out_dir, *extra]
    started = time.monotonic()
    child = subprocess.Popen(argv)
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop(child)
        code = None
    except BaseException:
        _stop(child)
        raise
    return code, time.monotonic() - started


def _stop(child):
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def build_parser(prog="wirelab suite"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=registry.names(), metavar="EXPERIMENT",
                        help=f"run only these experiments ({', '.join(registry.names())})")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds each experiment may take (default: 3600)")
    parser.add_argument("--json", action="store_true", help="print summary.json at the end")
    return parser


def main(argv=None, prog="wirelab suite"):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if os.geteuid() != 0:
        print(f"{prog}: error: the experiments need root: run it in a root shell "
              "(or: sudo bash scripts/demo.sh)", file=sys.stderr)
        return NotRootError.exit_code
    names = [n for n in registry.names() if not args.only or n in args.only]
    if not names:
        print(f"{prog}: error: no experiments found under experiments/", file=sys.stderr)
        return 1
    report_dir = new_results_dir(os.path.join(RESULTS_ROOT, "report"))
    stamp = os.path.basename(report_dir)
    results = []
    try:
        with signals_raise():
            for i, name in enumerate(names, 1):
                out_dir = new_results_dir(os.path.join(RESULTS_ROOT, name), stamp)
                print(f"\n=== [{i}/{len(names)}] {name} -> {os.path.relpath(out_dir, REPO)}", flush=True)
                code, seconds = run_one(name, out_dir, SUITE_ARGS.get(name, ()), timeout=args.timeout)
                if code in (130, 143):
                    raise KeyboardInterrupt
                results.append(report.ExperimentResult.from_run(name, out_dir, code, seconds, REPO))
    except (KeyboardInterrupt, Interrupted):
        print(f"{prog}: interrupted; the running experiment tore its network down", file=sys.stderr)
        return 130
    report.write_summary(report_dir, stamp, results)
    report.write_pages(report_dir, stamp, results)
    print("\n" + report.table(results))
    rel = os.path.relpath(report_dir, REPO)
    print(f"\nreport: {rel}/index.html (and report.md, summary.json)")
    if args.json:
        with open(os.path.join(report_dir, "summary.json")) as f:
            sys.stdout.write(f.read())
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(prog="python -m wirelab.experiment.suite"))
