"""The real ``traceroute`` binary on an emulated host, as a workload record.

Its output is saved beside the case (``traceroute.txt``, the command line
first) and returned for verify, which parses it with
:mod:`wirelab.observe.traceroute_parse`.
"""

import os

from wirelab.observe.probe_rtt import TRACEROUTE_BASE_PORT


def run_traceroute(tb, src, dst_ip, *, max_ttl, probes, wait, folder, family=4):
    """``traceroute -n`` from ``src`` to ``dst_ip``: ``probes`` per hop, ``wait``
    seconds each, UDP probes from port TRACEROUTE_BASE_PORT. Killed only after
    every probe could have waited its full time."""
    argv = ["traceroute"] + (["-6"] if family == 6 else []) + [
        "-n", "-q", str(probes), "-w", str(wait), "-p", str(TRACEROUTE_BASE_PORT),
        "-m", str(max_ttl), dst_ip]
    done = tb.run(src, argv, timeout=max_ttl * wait * probes + 10, check=False)
    with open(os.path.join(folder, "traceroute.txt"), "w") as f:
        f.write(" ".join(argv) + "\n" + done.stdout + done.stderr)
    return {"traceroute_argv": argv, "traceroute_exit": done.returncode,
            "traceroute_stdout": done.stdout}
