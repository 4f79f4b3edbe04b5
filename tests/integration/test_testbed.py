"""The Testbed owns everything it creates: nothing is left after success,
exception, SIGINT, SIGTERM, or (after the next run's cleanup) SIGKILL."""

import json
import os
import signal
import subprocess
import sys

import pytest

from hoststate import net_namespace_inodes
from tiny_topo import TinyTopo
from wirelab.net import runledger
from wirelab.errors import CommandError, ConfigError
from wirelab.net.netns import get_offloads, open_ioctl_socket
from wirelab.proc import wait_until
from wirelab.net.testbed import Testbed

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "testbed_child.py")


def node_inodes(tb):
    return {os.stat(f"/proc/{n.pid}/ns/net").st_ino for n in tb.net.hosts + tb.net.switches}


def assert_gone(run_id, inodes):
    assert runledger.labelled_pids(run_id) == {}, "processes of the run are still alive"
    assert not (set(inodes) & net_namespace_inodes()), "a namespace of the run still exists"
    assert not os.path.exists(os.path.join(runledger.LEDGER_DIR, f"{run_id}.json"))


def test_success_leaves_nothing(host_state):
    with Testbed(TinyTopo()) as tb:
        run_id, inodes = tb.run_id, node_inodes(tb)
        assert len(inodes) == 5, "every node (hosts, router, bridge) has its own namespace"
        assert runledger.labelled_pids(run_id), "node shells carry the run label"
        tb.run("h1", ["ping", "-c1", "-W2", "10.9.1.3"], timeout=5)
        tb.start("h3", ["sleep", "300"])
    assert_gone(run_id, inodes)


def test_exception_leaves_nothing(host_state):
    with pytest.raises(RuntimeError):
        with Testbed(TinyTopo()) as tb:
            run_id, inodes = tb.run_id, node_inodes(tb)
            raise RuntimeError("boom")
    assert_gone(run_id, inodes)


def test_failed_build_leaves_nothing(host_state):
    tb = Testbed(TinyTopo(bad_route=True))
    with pytest.raises(ConfigError, match="r1: cannot add route"):
        tb.__enter__()
    assert tb.run_id
    assert_gone(tb.run_id, [])


def _start_child():
    child = subprocess.Popen([sys.executable, CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    assert line, "child did not come up"
    return child, json.loads(line)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_tears_down(host_state, sig, code):
    child, info = _start_child()
    assert runledger.labelled_pids(info["run_id"])
    child.send_signal(sig)
    assert child.wait(timeout=20) == code
    assert_gone(info["run_id"], info["inodes"])


def test_sigkill_is_cleaned_by_next_run(host_state):
    child, info = _start_child()
    child.kill()
    child.wait(timeout=10)
    child.stdout.close()
    child.stdin.close()
    left = runledger.labelled_pids(info["run_id"])
    assert left, "SIGKILL leaves the run's processes behind (that is what we clean)"
    # the next Testbed cleans stale runs on entry
    with Testbed(TinyTopo()) as tb:
        assert runledger.labelled_pids(info["run_id"]) == {}
        assert tb.run_id != info["run_id"]
    assert_gone(info["run_id"], info["inodes"])


def test_clean_net_command(host_state):
    child, info = _start_child()
    child.kill()
    child.wait(timeout=10)
    out = subprocess.run([sys.executable, "-m", "wirelab.net.clean"], capture_output=True,
                         text=True, timeout=30, cwd=os.path.dirname(os.path.dirname(HERE)))
    assert out.returncode == 0, out.stderr
    assert info["run_id"] in out.stdout
    assert_gone(info["run_id"], info["inodes"])


def test_routes_and_router_state():
    with Testbed(TinyTopo()) as tb:
        r1 = tb.node("r1")
        assert r1.sysctl("net/ipv4/ip_forward") == "1"
        routes = {r["dst"]: r for r in tb.routes("h1")}
        assert routes["0.0.0.0/0"]["gateway"] == "10.9.0.2"
        assert routes["10.9.0.0/24"]["dev"] == "h1-eth0"
        choice = tb.route_get("h2", "10.9.0.1")
        assert choice["gateway"] == "10.9.1.1"
        # offloads are off on every emulated link
        for node in tb.net.hosts:
            with open_ioctl_socket(node) as sock:
                for intf in node.intfNames():
                    if intf != "lo":
                        assert get_offloads(sock, intf) == {"tso": False, "gso": False, "gro": False}
        saved = r1.wl_saved_sysctls["net/ipv4/ip_forward"]
        assert saved == "0", "a fresh namespace does not forward; the router records that"


def test_run_raises_with_argv_and_code():
    with Testbed(TinyTopo()) as tb:
        with pytest.raises(CommandError) as err:
            tb.run("h1", ["ping", "-c1", "-W1", "10.9.5.5"], timeout=5)
        assert err.value.returncode != 0
        assert err.value.argv[0] == "ping"
        assert "h1" in str(err.value)
        with pytest.raises(CommandError, match="timed out"):
            tb.run("h1", ["sleep", "5"], timeout=0.2)


def test_wait_until_deadline():
    with pytest.raises(TimeoutError, match="never"):
        wait_until(lambda: False, 0.1, what="never")
    assert wait_until(lambda: 42, 1) == 42
