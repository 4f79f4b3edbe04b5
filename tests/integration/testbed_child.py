"""Run by test_testbed.py in a child process: build TinyTopo, report, then wait.

Prints one JSON line {run_id, pids, inodes} once the network is up, then blocks
on stdin so the parent can kill it with the signal under test.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tiny_topo import TinyTopo  # noqa: E402
from wirelab.errors import Interrupted  # noqa: E402
from wirelab.net.testbed import Testbed  # noqa: E402

try:
    with Testbed(TinyTopo()) as tb:
        tb.start("h2", ["sleep", "300"], name="background-sleep")
        nodes = tb.net.hosts + tb.net.switches
        print(json.dumps({
            "run_id": tb.run_id,
            "pids": [n.pid for n in nodes],
            "inodes": [os.stat(f"/proc/{n.pid}/ns/net").st_ino for n in nodes],
        }), flush=True)
        sys.stdin.read()
except KeyboardInterrupt:
    sys.exit(130)
except Interrupted:
    sys.exit(143)
