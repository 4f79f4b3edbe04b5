"""Shared test setup: tiers (unit / integration / netem), root skips, snapshots."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)



def is_root():
    return os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    skip_root = pytest.mark.skip(reason="needs root to create network namespaces (run: sudo make test)")
    netem_ok = None
    for item in items:
        if "integration" in str(item.fspath) or item.get_closest_marker("root"):
            if not is_root():
                item.add_marker(skip_root)
        if item.get_closest_marker("netem"):
            if netem_ok is None:
                netem_ok = _kernel_has_netem()
            if not netem_ok:
                item.add_marker(pytest.mark.skip(
                    reason="this kernel has no sch_netem: these run inside User-Mode Linux "
                           "(make test does that; or tools/uml_run.py -- .venv/bin/python -m pytest -m netem)"))


def _kernel_has_netem():
    if not is_root():
        return False
    try:
        from wirelab.uml import has_sch_netem
    except ImportError:
        return False
    try:
        return has_sch_netem()
    except Exception:
        return False


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


@pytest.fixture
def host_state():
    """Snapshot of root-namespace links and named namespaces; assert unchanged after."""
    before = (root_links(), named_netns())
    yield before
    after = (root_links(), named_netns())
    assert after == before, f"host state changed: links/netns before {before}, after {after}"
