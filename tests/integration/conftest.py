"""Fixtures shared by the integration tests (root)."""

import os
import signal
import subprocess
import sys

import pytest

from tiny_topo import RouterPair
from wirelab.net.testbed import Testbed

BUSY_LOOP = "while True: pass"


@pytest.fixture(scope="module")
def tb():
    """One RouterPair network (h1 -- r1 -- h2) shared by a module's tests."""
    with Testbed(RouterPair()) as testbed:
        yield testbed


@pytest.fixture
def fresh_tb():
    """A RouterPair network of the test's own."""
    with Testbed(RouterPair()) as testbed:
        yield testbed


@pytest.fixture
def cpu_hog():
    """A busy loop on each of (up to) two CPUs, stopped by pid afterwards."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    hogs = []
    try:
        for cpu in cpus:
            hog = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
            hogs.append(hog)
            os.sched_setaffinity(hog.pid, {cpu})
        yield [h.pid for h in hogs]
    finally:
        for hog in hogs:
            hog.send_signal(signal.SIGKILL)
            hog.wait(10)
