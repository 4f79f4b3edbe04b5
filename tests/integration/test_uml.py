"""run_in_uml: a command inside User-Mode Linux keeps its argv, exit status and output.

Each test boots one guest (about 2.5 s); the whole file takes about 40 s. The
guest has sch_netem even when this kernel does not, which is the point.
"""

import json
import os
import shutil
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from wirelab.net import uml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_uml = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the guest runs as root)"),
    pytest.mark.skipif(uml.in_uml(), reason="already inside User-Mode Linux"),
    pytest.mark.skipif(shutil.which("linux.uml") is None,
                       reason="linux.uml not installed (apt package user-mode-linux)"),
]
# Boot (~2.5 s) plus the command; Python runs 2-4x slower inside.
TIMEOUT = 60


def run(argv, tmp_path, **kwargs):
    """Run in the guest with tmp_path writable; return (status, stdout, stderr)."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        status = uml.run_in_uml(argv, cwd=REPO, writable=[str(tmp_path)], timeout=TIMEOUT,
                                stdout=o, stderr=e, **kwargs)
    return status, out.read_bytes(), err.read_bytes()


def guest_python(tmp_path, source):
    """A script in tmp_path (writable, so visible in the guest) run by this venv's Python."""
    script = tmp_path / "guest.py"
    script.write_text(f"import sys\nsys.path.insert(0, {REPO!r})\n" + textwrap.dedent(source))
    return [sys.executable, str(script)]


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_framer_passes_exactly_the_command_output(chunk):
    # Pure: the console stream is cut at the markers wherever the chunks split.
    read_fd, write_fd = os.pipe()
    framer = uml._Framer("tok", write_fd, write_fd)
    payload = b"a\nb tok en\nno newline at the end, then noise"
    stream = b"kernel noise\ntok start\n" + payload + b"tok end\nreboot: Power down\n"
    for i in range(0, len(stream), chunk):
        framer.feed(stream[i:i + chunk])
    framer.close()
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as r:
        assert r.read() == payload
    assert framer.boot_log == b"kernel noise\n"


def test_missing_binary_names_the_apt_package(monkeypatch, tmp_path):
    monkeypatch.setenv("WIRELAB_LINUX_UML", "/nonexistent/linux.uml")
    with pytest.raises(uml.UmlNotInstalledError, match="user-mode-linux"):
        uml.run_in_uml(["true"], cwd=tmp_path, timeout=5)


class TestInGuest:
    pytestmark = needs_uml

    def test_status_zero_and_writable_dir_receives_a_file(self, tmp_path):
        status, _, _ = run(["sh", "-c", 'echo made > "$1/made.txt"', "sh", str(tmp_path)], tmp_path)
        assert status == 0
        assert (tmp_path / "made.txt").read_text() == "made\n"

    def test_writable_dir_inside_a_read_only_cwd_under_tmp(self, tmp_path):
        # A checkout under /tmp (as CI may clone it) is mounted read-only in the
        # guest; its results/ folder, writable, must not be hidden by that mount.
        checkout = tempfile.mkdtemp(prefix="wirelab-test-checkout-", dir="/tmp")
        try:
            results = os.path.join(checkout, "results")
            os.mkdir(results)
            with open(tmp_path / "out", "wb") as o:
                status = uml.run_in_uml(["sh", "-c", "echo ok > results/x && ! touch y 2>/dev/null"],
                                        cwd=checkout, writable=[results], timeout=TIMEOUT, stdout=o)
            assert status == 0, "results/ is writable and the checkout itself is read-only"
            assert open(os.path.join(results, "x")).read() == "ok\n"
        finally:
            shutil.rmtree(checkout)

    def test_argv_survives_and_status_and_streams_come_back(self, tmp_path):
        tricky = ["a b", "it's", '"q"', "$(touch /tmp/pwned)", "back\\slash", "new\nline", "",
                  "*", "; exit 3", "ünï"]
        status, out, err = run(
            ["sh", "-c", 'printf "<%s>\\n" "$@"; echo oops >&2; exit 7', "sh", *tricky], tmp_path)
        assert status == 7
        assert out == "".join(f"<{a}>\n" for a in tricky).encode()
        assert err == b"oops\n"

    def test_stdout_streams_while_the_command_runs(self, tmp_path):
        # The command prints, then waits for a file only the host creates after
        # seeing that output: it can only finish if the output streamed live.
        go = tmp_path / "go"
        read_fd, write_fd = os.pipe()
        result = {}

        def guest():
            try:
                result["status"] = uml.run_in_uml(
                    ["sh", "-c", 'echo ready; i=0; while [ ! -e "$1" ] && [ $i -lt 300 ]; '
                     'do sleep 0.1; i=$((i+1)); done; [ -e "$1" ] && echo done', "sh", str(go)],
                    cwd=REPO, writable=[str(tmp_path)], timeout=TIMEOUT, stdout=write_fd)
            finally:
                os.close(write_fd)

        thread = threading.Thread(target=guest)
        thread.start()
        with os.fdopen(read_fd, "rb") as r:
            assert r.readline() == b"ready\n"
            assert thread.is_alive(), "the guest finished before its first line arrived"
            go.touch()
            assert r.read() == b"done\n"
        thread.join(TIMEOUT)
        assert result["status"] == 0

    def test_timeout_kills_the_whole_process_group(self, tmp_path):
        timeout = 5   # the guest is up after ~2.5 s: the kill hits a running command
        began = time.monotonic()
        with pytest.raises(uml.UmlTimeoutError) as caught:
            uml.run_in_uml(["sleep", "600"], cwd=REPO, timeout=timeout)
        elapsed = time.monotonic() - began
        assert timeout <= elapsed < timeout + 15, f"took {elapsed:.1f}s"
        # run_in_uml already waited for the group to empty; check it independently.
        assert uml.processes_in_group(caught.value.pgid) == [], \
            f"left behind in process group {caught.value.pgid}"

    def test_netem_qdisc_by_tc_and_by_netlink(self, tmp_path):
        argv = guest_python(tmp_path, """
            import json, subprocess
            from pyroute2 import IPRoute
            from wirelab.net.kernel import has_sch_netem
            from wirelab.net.uml import in_uml
            with IPRoute() as ipr:
                ipr.link("add", ifname="wla", kind="veth", peer="wlb")
                subprocess.run(["tc", "qdisc", "add", "dev", "wla", "root", "netem",
                                "delay", "10ms", "loss", "1%"], check=True)
                ipr.tc("add", "netem", ipr.link_lookup(ifname="wlb")[0], handle="1:",
                       delay=20000, loss=2)
            qdiscs = json.loads(subprocess.run(["tc", "-j", "qdisc", "show"], check=True,
                                               capture_output=True, text=True).stdout)
            print(json.dumps({"in_uml": in_uml(), "has_sch_netem": has_sch_netem(),
                              "netem": {q["dev"]: q["options"] for q in qdiscs
                                        if q["kind"] == "netem"}}))
            """)
        status, out, err = run(argv, tmp_path)
        assert status == 0, err.decode()
        got = json.loads(out.decode().strip().splitlines()[-1])
        assert got["in_uml"] is True and got["has_sch_netem"] is True
        assert got["netem"]["wla"]["delay"]["delay"] == pytest.approx(0.010)
        assert got["netem"]["wla"]["loss-random"]["loss"] == pytest.approx(0.01)
        assert got["netem"]["wlb"]["delay"]["delay"] == pytest.approx(0.020)
        assert got["netem"]["wlb"]["loss-random"]["loss"] == pytest.approx(0.02)

    def test_mininet_two_hosts_ping_through_a_netem_link(self, tmp_path):
        delay_ms = 10
        argv = guest_python(tmp_path, f"""
            import json
            from mininet.link import TCLink
            from mininet.log import setLogLevel
            from mininet.net import Mininet
            setLogLevel("error")
            net = Mininet(controller=None, link=TCLink)
            h1 = net.addHost("h1", ip="10.0.0.1/24")
            h2 = net.addHost("h2", ip="10.0.0.2/24")
            net.addLink(h1, h2, delay="{delay_ms}ms")
            net.start()
            try:
                (_, _, (sent, received, rtt_min, _, _, _)), _ = net.pingFull([h1, h2])
            finally:
                net.stop()
            print(json.dumps({{"sent": sent, "received": received, "rtt_min_ms": rtt_min}}))
            """)
        status, out, err = run(argv, tmp_path)
        assert status == 0, err.decode()
        got = json.loads(out.decode().strip().splitlines()[-1])
        assert got["sent"] == got["received"] == 1
        # netem delays each direction by delay_ms; the RTT cannot be shorter.
        assert got["rtt_min_ms"] >= 2 * delay_ms, got
