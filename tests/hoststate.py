"""What a test run may leave behind on the host, as comparable sets.

Imported by tests/conftest.py (the ``host_state`` fixture) and by tests that
need a piece of it; a module of its own because ``conftest`` is a name two
folders use.
"""

import glob
import json
import os
import subprocess


def root_links():
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return {l["ifname"] for l in json.loads(out)}


def named_netns():
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True).stdout
    return {n["name"] for n in json.loads(out or "[]")}


def net_namespace_inodes():
    """Every network namespace some process is in (named or not)."""
    inodes = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                inodes.add(os.stat(f"/proc/{entry}/ns/net").st_ino)
            except OSError:
                pass
    return inodes


def labelled_processes():
    from wirelab.net.runledger import labelled_pids
    return set(labelled_pids())


def run_ledgers():
    from wirelab.net.runledger import LEDGER_DIR
    return set(os.listdir(LEDGER_DIR)) if os.path.isdir(LEDGER_DIR) else set()


def uml_control_dirs():
    return set(glob.glob("/tmp/wirelab-uml-*"))


def snapshot():
    """What a run may create: root-namespace links, named namespaces, every
    network namespace any process is in, every process carrying a run label,
    run ledgers, and User-Mode Linux control folders."""
    return {"links": root_links(), "named_netns": named_netns(),
            "netns": net_namespace_inodes(), "labelled": labelled_processes(),
            "ledgers": run_ledgers(), "uml_dirs": uml_control_dirs()}
