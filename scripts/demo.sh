#!/usr/bin/env bash
# The main job (`sudo make demo`): set up, then run every experiment on its
# default topology and write a report under results/report/<UTC time>/.
# Extra arguments go to `python -m wirelab.experiment.suite` (see --help there).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh || exit $?
exec .venv/bin/python -m wirelab.experiment.suite "$@"
