#!/usr/bin/env bash
# The test command (`make test`, .ci/run): set up, then run every test.
# As root: bash scripts/test.sh; otherwise: sudo bash scripts/test.sh (or plain
# bash scripts/test.sh: it asks sudo itself when there is one).
#
# 1. All tests on this kernel: unit tests, integration tests as root. Tests
#    marked `netem` skip themselves when the kernel has no sch_netem.
# 2. If the kernel has no sch_netem (WSL2, many container kernels, this CI
#    machine), the `netem` tests run again inside User-Mode Linux, which has it.
# Extra arguments go to pytest. Exit status: non-zero if either part failed.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo bash "$here/scripts/test.sh" "$@"
    fi
    echo "test: must run as root, and there is no sudo: run it in a root shell (su -)" >&2
    exit 4
fi
cd "$here"

bash scripts/setup.sh || exit $?
PY=.venv/bin/python

# Only the tests need a browser: the HTML report test opens the report in
# headless Chromium. Debian's package (Ubuntu has only a snap, which does not
# run here: that test then skips and says why).
if ! command -v chromium >/dev/null 2>&1; then
    echo "test: installing chromium (the HTML report's browser test)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get install -y -q --no-install-recommends chromium >/dev/null \
        || { timeout 300 apt-get update -q >/dev/null && timeout 600 apt-get install -y -q --no-install-recommends chromium >/dev/null; } \
        || echo "test: could not install chromium: the HTML report's browser test will skip" >&2
fi

status=0
"$PY" -m pytest "$@"
rc=$?
# pytest's 5 means "no tests collected": not a failure of the code under test.
if [ $rc -ne 0 ] && [ $rc -ne 5 ]; then status=$rc; fi

if ! "$PY" -c 'import sys; from wirelab.net.kernel import has_sch_netem; sys.exit(0 if has_sch_netem() else 1)' 2>/dev/null; then
    if [ -x /usr/bin/linux.uml ]; then
        # (uml_run.py says in one line that it runs inside User-Mode Linux, and why)
        mkdir -p results
        "$PY" tools/uml_run.py --timeout 3000 --writable "$here/results" -- \
            "$PY" -m pytest -p no:cacheprovider -m netem "$@"
        rc=$?
        # Here "no tests collected" (5) is a failure: the netem tests exist, so
        # collecting none means a broken marker or collection.
        if [ $rc -ne 0 ]; then status=$rc; fi
    else
        echo "wirelab: this kernel has no sch_netem and user-mode-linux is not installed: netem tests skipped" >&2
    fi
fi
exit $status
