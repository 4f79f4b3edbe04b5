"""The main job: every experiment on its default topology, then one report.

``python -m wirelab.experiment.suite`` (``sudo make demo``) runs each experiment of
:data:`SUITE` that exists as ``experiments/<name>.py``, each in its own process
(those that need sch_netem move themselves into User-Mode Linux when the kernel
lacks it), with results in ``results/<name>/<UTC time>/``. It then writes
``results/report/<UTC time>/report.md`` and ``summary.json`` from those folders
and prints a summary table. Exit status 0 when every experiment's claims hold.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time

from wirelab.errors import Interrupted
from wirelab.experiment.core import REPO, RESULTS_ROOT, new_results_dir, write_json
from wirelab.net.testbed import signals_raise

# After a timeout (or our own interruption), how long an experiment gets to tear
# its network down after SIGTERM before it is killed.
STOP_GRACE_S = 60

# In teaching order: addresses and routes, then paths, then what TCP hides.
SUITE = ["routing", "traceroute", "tcp_recovery"]
# Beyond the defaults, the report shows goodput against loss beside the Mathis model.
SUITE_ARGS = {"tcp_recovery": ["--sweep-loss", "0.5", "1", "2", "5"]}


def available():
    return [n for n in SUITE if os.path.exists(os.path.join(REPO, "experiments", f"{n}.py"))]


def run_one(name, out_dir, extra=(), timeout=None):
    """Run one experiment; on timeout or interruption stop it with SIGTERM (it
    then tears its network down, UML guest included) and SIGKILL only after
    :data:`STOP_GRACE_S`. Returns (exit code or None on timeout, seconds)."""
    script = os.path.join(REPO, "experiments", f"{name}.py")
    argv = [sys.executable, script, "--out", out_dir, *extra]
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


def load_metrics(out_dir):
    try:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def summarise(name, out_dir, code, seconds):
    metrics = load_metrics(out_dir) or {}
    claims = metrics.get("claims", [])
    passed = sum(1 for c in claims if c.get("ok"))
    status = metrics.get("status") or ("timeout" if code is None else "error")
    if code not in (0, 7) and status == "pass":
        status = "error"
    return {
        "experiment": name, "status": status, "exit_code": code,
        "claims_passed": passed, "claims_total": len(claims),
        "seconds": round(seconds, 1), "results": os.path.relpath(out_dir, REPO),
        "error": metrics.get("error"),
        "failed_claims": [c["name"] for c in claims if not c.get("ok")],
        "plots": sorted(os.path.relpath(os.path.join(d, f), out_dir)
                        for d, _, files in os.walk(out_dir) for f in files if f.endswith(".png")),
        "claims": claims,
    }


def table(rows):
    lines = [f"{'experiment':14} {'status':11} {'claims':>9} {'seconds':>8}  results",
             "-" * 78]
    for r in rows:
        claims = f"{r['claims_passed']}/{r['claims_total']}"
        lines.append(f"{r['experiment']:14} {r['status']:11} {claims:>9} {r['seconds']:>8}  {r['results']}")
    return "\n".join(lines)


def report_markdown(rows, stamp):
    out = [f"# wirelab report {stamp}", "",
           "Each experiment ran on its default topology; every claim below was checked "
           "from evidence saved in its results folder (params.json, pcaps, logs, metrics.json).",
           "", "| experiment | status | claims | seconds | results |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['experiment']} | {r['status']} | {r['claims_passed']}/{r['claims_total']} "
                   f"| {r['seconds']} | `{r['results']}` |")
    for r in rows:
        out += ["", f"## {r['experiment']}", ""]
        if r["error"]:
            out += [f"Error: `{r['error']}`", ""]
        if r["claims"]:
            out += ["| claim | result | measured | expected | tolerance |", "|---|---|---|---|---|"]
            for c in r["claims"]:
                cells = [json.dumps(c.get(k), default=str) if c.get(k) is not None else ""
                         for k in ("measured", "expected", "tolerance")]
                cells = [x if len(x) < 80 else x[:77] + "..." for x in cells]
                out.append(f"| {c['name']} | {'PASS' if c['ok'] else 'FAIL'} | " + " | ".join(cells) + " |")
        for png in r["plots"]:
            rel = os.path.relpath(os.path.join(REPO, r["results"], png),
                                  os.path.join(RESULTS_ROOT, "report", stamp))
            out += ["", f"![{png}]({rel})"]
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wirelab.experiment.suite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=SUITE, help="run only these experiments")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds each experiment may take (default: 3600)")
    parser.add_argument("--json", action="store_true", help="print summary.json at the end")
    args = parser.parse_args(argv)
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if os.geteuid() != 0:
        print("wirelab: error: the experiments need root: sudo make demo", file=sys.stderr)
        return 4
    names = [n for n in available() if not args.only or n in args.only]
    if not names:
        print("wirelab: error: no experiments found under experiments/", file=sys.stderr)
        return 1
    report_dir = new_results_dir(os.path.join(RESULTS_ROOT, "report"))
    stamp = os.path.basename(report_dir)
    rows = []
    try:
        with signals_raise():
            for i, name in enumerate(names, 1):
                out_dir = new_results_dir(os.path.join(RESULTS_ROOT, name), stamp)
                print(f"\n=== [{i}/{len(names)}] {name} -> {os.path.relpath(out_dir, REPO)}", flush=True)
                code, seconds = run_one(name, out_dir, SUITE_ARGS.get(name, ()), timeout=args.timeout)
                if code in (130, 143):
                    raise KeyboardInterrupt
                rows.append(summarise(name, out_dir, code, seconds))
    except (KeyboardInterrupt, Interrupted):
        print("wirelab: interrupted; the running experiment tore its network down", file=sys.stderr)
        return 130
    write_json(os.path.join(report_dir, "summary.json"), {"stamp": stamp, "experiments": rows})
    with open(os.path.join(report_dir, "report.md"), "w") as f:
        f.write(report_markdown(rows, stamp))
    print("\n" + table(rows))
    print(f"\nreport: {os.path.relpath(os.path.join(report_dir, 'report.md'), REPO)}")
    if args.json:
        with open(os.path.join(report_dir, "summary.json")) as f:
            sys.stdout.write(f.read())
    return 0 if all(r["status"] == "pass" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
