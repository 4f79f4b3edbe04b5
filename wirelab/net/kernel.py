"""Probes of what the running kernel can do, for preflight, the netem code and UML.

Each probe creates what it tests in a throw-away network namespace (``unshare
--net``): the namespace dies with the probing process, so nothing is left behind.
"""

import subprocess

from wirelab.errors import MissingToolError, WirelabError


def has_sch_netem(timeout=10.0):
    """Whether the running kernel can create a netem qdisc (needs root).

    Tries ``tc qdisc add dev lo root netem`` in a fresh network namespace made by
    ``unshare --net``. The kernel loads sch_netem on demand if it is a module.
    """
    argv = ["unshare", "--net", "--", "tc", "qdisc", "add", "dev", "lo", "root",
            "netem", "delay", "1ms"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise MissingToolError(f"has_sch_netem needs '{exc.filename}' (util-linux, iproute2)") from None
    except subprocess.TimeoutExpired:
        raise WirelabError(f"{' '.join(argv)} timed out after {timeout:g}s") from None
    if done.returncode == 0:
        return True
    if "Operation not permitted" in done.stderr or "Permission denied" in done.stderr:
        raise PermissionError(f"has_sch_netem needs root: {done.stderr.strip()}")
    return False
