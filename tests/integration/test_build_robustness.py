"""A run interrupted while its network is being built, or a node whose shell
does not come up, fails at once and leaves nothing: no ledger, no process, no
namespace of the run."""

import json
import os
import secrets
import subprocess
import sys
import time

import pytest
from mininet.topo import Topo

from hoststate import net_namespace_inodes
from tiny_topo import TinyTopo
from wirelab.net import runledger
from wirelab.net.nodes import Host, LinuxRouter, NodeStartError
from wirelab.net.testbed import Testbed

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "testbed_child.py")
# Spread over InternetTopo's build (17 shells, about 0.4 s on an idle machine;
# several times that under load): before the first shell, between and inside
# shell start-ups, during links, and after the build.
INTERRUPT_DELAYS_S = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7]
CHILD_DEADLINE_S = 60


def ledger_files(run_id):
    if not os.path.isdir(runledger.LEDGER_DIR):
        return []
    return [n for n in os.listdir(runledger.LEDGER_DIR) if n.startswith(run_id)]


def assert_run_gone(run_id, inodes=()):
    assert runledger.labelled_pids(run_id) == {}, "processes of the run are still alive"
    assert not ledger_files(run_id), f"ledger left in {runledger.LEDGER_DIR}"
    assert not (set(inodes) & net_namespace_inodes()), "a namespace of the run still exists"


@pytest.mark.parametrize("delay", INTERRUPT_DELAYS_S)
def test_interrupt_while_building_leaves_nothing(delay):
    run_id = f"test-interrupt-{secrets.token_hex(3)}"
    done = subprocess.run(
        [sys.executable, CHILD, "--interrupt-after", str(delay), "--run-id", run_id,
         "--topo", "internet"],
        capture_output=True, text=True, timeout=CHILD_DEADLINE_S)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    inodes = [line["inode"] for line in lines if "inode" in line]
    built = any(line.get("built") for line in lines)
    assert done.returncode in (0, 130), done.stderr[-2000:]
    assert "teardown problems" not in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr or done.returncode == 130, done.stderr[-2000:]
    assert_run_gone(run_id, inodes)
    if delay <= 0.1:
        assert not built, "the interrupt should have come while building"


class ExitingShellHost(Host):
    """A node whose shell fails the way mnexec did where remounting /sys was refused."""

    def shell_argv(self, opts):
        return ["mnexec", opts, "sh", "-c", "echo 'mnexec: remount: Invalid argument' >&2; exit 1"]


class SilentShellHost(Host):
    """A node whose shell runs but never prints a prompt."""

    START_TIMEOUT_S = 1.0

    def shell_argv(self, opts):
        return ["mnexec", opts, "sleep", "60"]


class OneBadNode(Topo):
    """h1 -- r1 -- bad: the third node's shell does not come up."""

    def build(self, bad_cls=ExitingShellHost):
        self.addHost("h1", cls=Host, routes=[("default", "10.9.0.2")])
        self.addHost("r1", cls=LinuxRouter)
        self.addHost("bad", cls=bad_cls)
        self.addLink("h1", "r1", params1={"addrs": ["10.9.0.1/24"]},
                     params2={"addrs": ["10.9.0.2/24"]})
        self.addLink("r1", "bad", params1={"addrs": ["10.9.1.1/24"]},
                     params2={"addrs": ["10.9.1.2/24"]})


@pytest.mark.parametrize("bad_cls,message,deadline_s", [
    (ExitingShellHost, r"node bad: shell exited 1 before it could print its prompt: "
                       r"mnexec: remount: Invalid argument", 5.0),
    (SilentShellHost, r"node bad: shell \(pid \d+\) did not print its prompt within 1s", 5.0),
])
def test_node_that_does_not_come_up_fails_the_run(bad_cls, message, deadline_s):
    tb = Testbed(OneBadNode(bad_cls=bad_cls))
    began = time.monotonic()
    with pytest.raises(NodeStartError, match=message) as err:
        tb.__enter__()
    took = time.monotonic() - began
    assert took < deadline_s, f"failing took {took:.1f}s"
    assert "\n" not in str(err.value)
    assert err.value.exit_code == 6
    assert_run_gone(tb.run_id)


def test_good_nodes_still_come_up():
    with Testbed(TinyTopo()) as tb:
        assert tb.run("h1", ["ping", "-c1", "-W2", "10.9.1.3"], timeout=5).returncode == 0
