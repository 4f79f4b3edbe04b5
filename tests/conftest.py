"""Shared test setup: tiers (unit / integration / netem), root skips, snapshots."""

import os
import sys

import pytest

from hoststate import snapshot  # noqa: E402  (tests/ is on sys.path for conftest)

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
        from wirelab.net.kernel import has_sch_netem
    except ImportError:
        return False
    try:
        return has_sch_netem()
    except Exception:
        return False


@pytest.fixture
def host_state():
    """Assert that the test leaves the machine's network state as it found it."""
    before = snapshot()
    yield before
    after = snapshot()
    if os.environ.get("WIRELAB_SHARED_MACHINE"):
        # Other people's runs come and go on a shared machine: compare only
        # the root namespace's links and named namespaces there. CI compares all.
        for key in ("netns", "labelled", "ledgers", "uml_dirs"):
            before.pop(key), after.pop(key)
    diff = {k: {"added": sorted(after[k] - before[k]), "removed": sorted(before[k] - after[k])}
            for k in before if after[k] != before[k]}
    assert not diff, f"host state changed: {diff}"
