#!/usr/bin/env bash
# The main job (`make demo`): set up, then run every experiment on its default
# topology and write a report under results/report/<UTC time>/ (index.html with
# the plots embedded, report.md, summary.json).
# As root: bash scripts/demo.sh; otherwise: sudo bash scripts/demo.sh (or plain
# bash scripts/demo.sh: it asks sudo itself when there is one).
# Extra arguments go to `wirelab suite` (see wirelab suite --help).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo bash "$here/scripts/demo.sh" "$@"
    fi
    echo "demo: must run as root, and there is no sudo: run it in a root shell (su -)" >&2
    exit 4
fi
cd "$here"
bash scripts/setup.sh || exit $?
exec .venv/bin/wirelab suite "$@"
