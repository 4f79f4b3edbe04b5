"""Live tests of the targeted faults, each with both backends: nft (host
kernel) and legacy xtables (host kernel and User-Mode Linux, whose nf_tables
has no inet family).

::

    h1 10.0.1.2 ---- 10.0.1.1 r1 10.0.2.1 ---- 10.0.2.2 h2
            h1-eth0  r1-eth0      r1-eth1   h2-eth0

Every test transfers h1 -> h2 through a fault on r1 (forwarded: prerouting) or
h2 (locally generated: output) and asserts exactly one packet dropped and the
transfer completed. In User-Mode Linux:

    tools/uml_run.py --writable results -- .venv/bin/python -m pytest -p no:cacheprovider \\
        tests/integration/test_faults.py
"""

import json
import math
import os
import signal
import sys

import pytest

from wirelab.errors import ConfigError, Interrupted
from wirelab.impair import faults
from wirelab.impair.nft import table_name
from wirelab.impair.spec import NetemSpec
from wirelab.impair.xtables import chain_name
from wirelab.proc import wait_until
from wirelab.net.testbed import Testbed
from wirelab.net.uml import in_uml

from tiny_topo import H2, RouterPair  # noqa: E402  (tests/integration on sys.path)
TRANSFER_BYTES = 1_000_000
# Largest payload per segment on this path (1500 MTU - 40 bytes of headers):
# the transfer needs at least this many data segments.
MAX_MSS = 1460
BACKENDS = ("nft", "xtables")
# Each backend's tests use their own server ports: the module's testbed keeps
# every fault installed until it ends.
PORT_BASE = {"nft": 5100, "xtables": 5200}


# A server that counts the bytes it receives and answers with the count, and a
# client that sends a fixed number of bytes and prints the answer: the transfer
# completed exactly when the client prints the number it sent.
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
c.sendall(str(n).encode()); c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
c.sendall(b"x" * int(sys.argv[3])); c.shutdown(socket.SHUT_WR)
answer = b""
while True:
    b = c.recv(100)
    if not b: break
    answer += b
print(answer.decode())
"""


def transfer(tb, port, nbytes=TRANSFER_BYTES, timeout=30):
    """Send ``nbytes`` h1 -> h2:port; return what the server says it received."""
    server = tb.start("h2", [sys.executable, "-c", SERVER, str(port)], name="server")
    wait_until(lambda: tb.run("h2", ["ss", "-Hltn", f"sport = :{port}"], timeout=5).stdout.strip(),
               5, what=f"server listening on {port}")
    done = tb.run("h1", [sys.executable, "-c", CLIENT, H2, str(port), str(nbytes)], timeout=timeout)
    server.popen.wait(10)
    return int(done.stdout.strip())


def rules(tb, node):
    """Both backends' rules with their counters, as the kernel has them."""
    out = []
    for argv in (["nft", "list", "ruleset"], ["iptables-legacy-save", "-c", "-t", "raw"],
                 ["ip6tables-legacy-save", "-c", "-t", "raw"]):
        r = tb.run(node, argv, timeout=5, check=False)
        out.append(f"--- {node}: {' '.join(argv)}\n{r.stdout}{r.stderr}")
    return "\n".join(out)


def diagnostics(tb, *nodes):
    """What a person needs when a live test fails (house style 12)."""
    out = []
    for n in nodes:
        r = tb.run(n, ["ss", "-nita"], timeout=5, check=False)
        out.append(f"--- {n}: ss -nita\n{r.stdout}{r.stderr}\n{rules(tb, n)}")
    return "\n".join(out)


def install(fault, tb, node, backend):
    """Install with ``backend``; skip (not pass) where this kernel lacks it."""
    try:
        return tb.install_fault(node, fault, backend=backend)
    except faults.FaultsUnavailableError as exc:
        pytest.skip(f"no {backend} backend on this kernel: {exc}")


def xt_chains(tb, node):
    """Names of the user chains in ``node``'s legacy raw tables (IPv4 and IPv6)."""
    names = set()
    for tool in ("iptables-legacy-save", "ip6tables-legacy-save"):
        for line in tb.run(node, [tool, "-t", "raw"], timeout=5).stdout.splitlines():
            if line.startswith(":"):
                names.add(line[1:].split()[0])
    return names - {"PREROUTING", "OUTPUT"}


def nft_tables(tb, node):
    listed = json.loads(tb.run(node, ["nft", "-j", "list", "tables"], timeout=5).stdout)
    return {t["table"]["name"] for t in listed["nftables"] if "table" in t}


# ------------------------------------------------------ one drop, recovered

@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_nth_data_segment_drops_exactly_one_and_transfer_completes(tb, backend):
    port = PORT_BASE[backend] + 1
    fault = install(faults.DropNthDataSegment(n=10, direction="to_server", dport=port), tb, "r1", backend)
    received = transfer(tb, port)
    counts = fault.counters()
    print(f"{fault.describe()}: {counts}")
    info = f"counts={counts} received={received}\n" + diagnostics(tb, "r1")
    assert fault.backend == backend
    assert received == TRANSFER_BYTES, info
    assert counts["dropped"] == 1, info
    # Every data segment was a candidate: at least the minimum number of
    # segments, plus the retransmission of the dropped one.
    assert counts["matched"] >= math.ceil(TRANSFER_BYTES / MAX_MSS) + 1, info


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_nth_data_segment_to_client_counts_only_that_direction(tb, backend):
    port = PORT_BASE[backend] + 2
    # The server's only data is the short answer: one data segment to the client.
    fault = install(faults.DropNthDataSegment(n=1, direction="to_client", dport=port), tb, "r1", backend)
    received = transfer(tb, port, nbytes=20_000)
    counts = fault.counters()
    print(f"{fault.describe()}: {counts}")
    info = f"counts={counts} received={received}\n" + diagnostics(tb, "r1")
    assert received == 20_000, info
    assert counts["dropped"] == 1, info
    # The answer and its retransmission; the ~14 segments of 20 kB to the
    # server and every pure ACK are not candidates.
    assert 2 <= counts["matched"] <= 4, info


@pytest.mark.parametrize("backend", BACKENDS)
def test_nth_is_the_nth_candidate_not_one_earlier(fresh_tb, backend):
    # Own testbed: a fault that never fires would (rightly) stop xtables from
    # installing more faults on r1 in the module's testbed.
    tb, port = fresh_tb, PORT_BASE[backend] + 5
    # One data segment goes to the client (the answer): n=2 must never fire.
    fault = install(faults.DropNthDataSegment(n=2, direction="to_client", dport=port), tb, "r1", backend)
    received = transfer(tb, port, nbytes=20_000)
    counts = fault.counters()
    print(f"{fault.describe()}: {counts}")
    assert received == 20_000
    assert counts == {"matched": 1, "dropped": 0}, diagnostics(tb, "r1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_synack_on_the_server_itself(tb, backend):
    port = PORT_BASE[backend] + 3
    # On h2 the SYN-ACK is locally generated: this exercises the output hook.
    fault = install(faults.DropSynAck(dport=port), tb, "h2", backend)
    received = transfer(tb, port, nbytes=10_000)
    counts = fault.counters()
    print(f"{fault.describe()}: {counts}")
    info = f"counts={counts} received={received}\n" + diagnostics(tb, "h2")
    assert received == 10_000, info
    assert counts["dropped"] == 1, info
    assert counts["matched"] >= 2, info  # the lost one and at least one retransmitted


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_first_fin_to_server(tb, backend):
    port = PORT_BASE[backend] + 4
    fault = install(faults.DropFirstFin(direction="to_server", dport=port, src="10.0.1.2", dst=H2),
                    tb, "r1", backend)
    received = transfer(tb, port, nbytes=10_000)
    counts = fault.counters()
    print(f"{fault.describe()}: {counts}")
    info = f"counts={counts} received={received}\n" + diagnostics(tb, "r1")
    assert received == 10_000, info
    assert counts["dropped"] == 1, info
    assert counts["matched"] >= 2, info


# ------------------------------------------------------------ lifecycle

@pytest.mark.parametrize("backend", BACKENDS)
def test_fault_rules_live_in_the_node_and_go_at_teardown(backend):
    seen = {}
    with Testbed(RouterPair()) as testbed:
        name = (table_name if backend == "nft" else chain_name)(testbed.run_id)
        listing = nft_tables if backend == "nft" else xt_chains
        # Cleanups run after the impairments are removed and before the nodes
        # stop: it sees what teardown left in r1.
        testbed.add_cleanup("test: r1's rules after the fault's cleanup",
                            lambda: seen.update(r1=listing(testbed, "r1"), rules=rules(testbed, "r1")))
        fault = install(faults.DropSynAck(dport=5105), testbed, "r1", backend)
        assert name in listing(testbed, "r1"), rules(testbed, "r1")
        assert not {n for n in listing(testbed, "h1") if n.startswith(name)}
        if backend == "xtables":
            # The hook chain and the fault's candidate and hit chains, both families.
            assert {name, f"{name}d0", f"{name}h0"} <= listing(testbed, "r1")
            print(rules(testbed, "r1"))
    assert not {n for n in seen["r1"] if n.startswith(name)}, seen["rules"]
    if backend == "xtables":  # no jump left in the hooks either
        assert name not in seen["rules"], seen["rules"]
    # The final counts were kept when the rules went.
    assert fault.removed and fault.counters() == {"matched": 0, "dropped": 0}
    assert fault.remove() is False


def test_auto_uses_nft_where_it_can_else_xtables(fresh_tb):
    tb = fresh_tb
    first = tb.install_fault("r1", faults.DropSynAck(dport=5301))
    second = tb.install_fault(tb["r1"], faults.DropFirstFin(direction="to_server", dport=5301))
    expected = "xtables" if in_uml() else "nft"  # Debian's UML 6.1: no inet family
    assert (first.backend, second.backend) == (expected, expected)
    received = transfer(tb, 5301, nbytes=10_000)
    print(f"auto chose {expected}: {first.counters()} {second.counters()}")
    assert received == 10_000
    assert first.counters()["dropped"] == 1 and second.counters()["dropped"] == 1, \
        diagnostics(tb, "r1")
    assert [h.to_dict()["backend"] for h in tb.impairments] == [expected, expected]
    json.dumps(tb.impairments.to_dict())


def test_nft_refuses_clearly_where_nftables_lacks_inet(fresh_tb):
    if not in_uml():
        pytest.skip("the host kernel's nf_tables has the inet family (nft faults tested above)")
    with pytest.raises(faults.FaultsUnavailableError, match="nf_tables has no inet family"):
        fresh_tb.install_fault("r1", faults.DropSynAck(dport=5106), backend="nft")


def test_unknown_backend_is_a_config_error(tb):
    with pytest.raises(ConfigError, match="backend='iptables'"):
        tb.install_fault("r1", faults.DropSynAck(dport=5107), backend="iptables")


# ------------------------------------------ xtables: table rewrites and nth

def test_xtables_fired_fault_stays_fired_when_the_table_is_rewritten(fresh_tb):
    # Every change to a legacy table restarts its nth matches: the xt_recent
    # latch must keep a fault that fired from firing again.
    tb = fresh_tb
    fault = install(faults.DropNthDataSegment(n=1, direction="to_server", dport=5401), tb, "r1", "xtables")
    assert transfer(tb, 5401, nbytes=20_000) == 20_000
    assert fault.counters()["dropped"] == 1
    install(faults.DropSynAck(dport=5402), tb, "r1", "xtables")  # rewrites r1's raw table
    assert transfer(tb, 5401, nbytes=20_000) == 20_000
    counts = fault.counters()
    print(f"after a rewrite and a second transfer: {counts}")
    assert counts["dropped"] == 1, diagnostics(tb, "r1")
    assert counts["matched"] >= 2 * math.ceil(20_000 / MAX_MSS) + 1, counts


def test_xtables_refuses_to_restart_a_fault_that_is_counting(fresh_tb):
    tb = fresh_tb
    pending = install(faults.DropNthDataSegment(n=10_000, direction="to_server", dport=5403,
                                                dst=H2), tb, "r1", "xtables")
    other = install(faults.DropSynAck(dport=5405, src=H2), tb, "r1", "xtables")
    assert transfer(tb, 5403, nbytes=20_000) == 20_000
    before = pending.counters()
    assert before["matched"] >= math.ceil(20_000 / MAX_MSS) and before["dropped"] == 0, before
    with pytest.raises(ConfigError, match="would restart the count"):
        tb.install_fault("r1", faults.DropSynAck(dport=5404), backend="xtables")
    # Removing a fault rewrites the table too: refused while another one counts.
    with pytest.raises(ConfigError, match="would restart the count"):
        other.remove()
    assert not other.removed
    # Refused before anything was written; the IPv6 table is another table.
    v6 = tb.install_fault("r1", faults.DropSynAck(dport=5404, src="fd00::2"), backend="xtables")
    assert v6.remove() is True
    assert pending.counters() == before
    # Teardown removes the whole table at once: nothing is refused there.


# ------------------------------------------------ netem and a fault (UML)

# Marked netem because it needs sch_netem (a fault under netem delay, as in
# experiments/tcp_recovery.py): so it also runs in User-Mode Linux in CI,
# where 'auto' must fall back to xtables.
@pytest.mark.netem
def test_fault_under_netem_delay_drops_one_with_the_auto_backend(fresh_tb):
    tb = fresh_tb
    tb.apply_netem("r1", "r1-eth1", NetemSpec(delay=10))
    fault = tb.install_fault("r1", faults.DropNthDataSegment(n=5, direction="to_server", dport=5501,
                                                             src="10.0.1.2", dst=H2))
    received = transfer(tb, 5501, nbytes=200_000)
    counts = fault.counters()
    print(f"{fault.backend} under netem delay 10ms: {counts}")
    info = f"counts={counts} received={received}\n" + diagnostics(tb, "r1")
    assert fault.backend == ("xtables" if in_uml() else "nft"), info
    assert received == 200_000, info
    assert counts["dropped"] == 1, info
    assert counts["matched"] >= math.ceil(200_000 / MAX_MSS) + 1, info


# ------------------------------------------------- handles: remove, teardown

def test_removing_one_fault_leaves_the_others_counting(fresh_tb):
    tb = fresh_tb
    backend = "xtables" if in_uml() else "nft"
    keep = install(faults.DropNthDataSegment(n=3, direction="to_server", dport=5601), tb, "r1", backend)
    with install(faults.DropSynAck(dport=5602), tb, "r1", backend) as gone:
        assert list(tb.impairments) == [keep, gone]
    assert gone.removed and gone.remove() is False          # idempotent
    assert list(tb.impairments) == [keep]
    assert transfer(tb, 5602, nbytes=10_000) == 10_000       # no SYN-ACK dropped any more
    assert gone.counters() == {"matched": 0, "dropped": 0}
    assert transfer(tb, 5601, nbytes=20_000) == 20_000
    assert keep.counters()["dropped"] == 1, diagnostics(tb, "r1")
    name = table_name(tb.run_id) if backend == "nft" else chain_name(tb.run_id)
    listing = nft_tables if backend == "nft" else xt_chains
    assert keep.remove() is True
    # The node's last fault took the table (or the run's chains) with it.
    assert not {n for n in listing(tb, "r1") if n.startswith(name)}, rules(tb, "r1")
    assert keep.counters()["dropped"] == 1 and list(tb.impairments) == []


@pytest.mark.parametrize("how", ["exception", "signal"])
def test_teardown_removes_faults_on_exception_and_signal(how):
    seen = {}
    with pytest.raises(RuntimeError if how == "exception" else Interrupted):
        with Testbed(RouterPair()) as tb:
            backend = "xtables" if in_uml() else "nft"
            name = table_name(tb.run_id) if backend == "nft" else chain_name(tb.run_id)
            listing = nft_tables if backend == "nft" else xt_chains
            tb.add_cleanup("test: r1's rules after the impairments went", lambda: seen.update(
                left={n for n in listing(tb, "r1") if n.startswith(name)}, live=list(tb.impairments)))
            handle = install(faults.DropSynAck(dport=5701), tb, "r1", backend)
            assert transfer(tb, 5701, nbytes=1_000) == 1_000
            if how == "exception":
                raise RuntimeError("boom")
            os.kill(os.getpid(), signal.SIGTERM)   # the Testbed turns it into Interrupted
            wait_until(lambda: False, 5, what="SIGTERM to interrupt the run")
    assert seen == {"left": set(), "live": []}, seen
    assert handle.removed and handle.counters()["dropped"] == 1
