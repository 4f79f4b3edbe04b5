"""``make clean-net``: remove exactly what crashed wirelab runs left behind.

A run that was killed (SIGKILL, power loss of the VM's process, a crashed
interpreter) leaves its ledger in /run/wirelab and processes labelled with its
run id; their namespaces hold its interfaces, bridges, qdiscs and nftables
rules; a User-Mode Linux run also leaves its /tmp/wirelab-uml-* folder. This
stops those processes and removes those folders -- only the ones the ledgers
name -- and then the ledgers. Runs whose owner is still alive are left alone.
"""

import argparse
import sys

from wirelab.net.runledger import LEDGER_DIR, clean_stale_runs, labelled_pids, stale_runs


def main(argv=None, prog="python -m wirelab.net.clean"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    args = parser.parse_args(argv)
    import os
    if os.geteuid() != 0:
        print("clean-net: error: must run as root (sudo make clean-net)", file=sys.stderr)
        return 4
    if args.dry_run:
        runs = stale_runs()
        labels = labelled_pids()
        for run_id, data in runs:
            pids = sorted(p for p, label in labels.items() if label == run_id)
            folders = data.get("folders", [])
            print(f"stale run {run_id}: processes {pids}"
                  + (f", folders {folders}" if folders else ""))
        if not runs:
            print("nothing to clean")
        return 0
    cleaned = clean_stale_runs(log=print)
    if not cleaned:
        print(f"clean-net: nothing left behind (ledgers in {LEDGER_DIR})")
    else:
        total = sum(cleaned.values())
        print(f"clean-net: removed {len(cleaned)} stale run(s), {total} process(es)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
