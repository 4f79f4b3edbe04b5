"""Workloads that move known messages between emulated hosts, as JSON-able records.

* :func:`message_transfer` -- one TCP message handed to the kernel whole
  (``tcpmessage``, corked) to ``tcpflow serve``; aborted (RST) at its deadline.
* :func:`udp_exchange` -- UDP datagrams of given sizes (``udpflow``), DF set or
  clear, each reported by the receiver with its size and sha256.
* :func:`concurrent_transfers` -- several ``tcpflow`` transfers at once, from
  several programs on several hosts: every server READY first, then every
  client started, all awaited under one deadline. With ``hold_rcvbuf`` the
  overlap is certain, not a matter of scheduling: each server holds its
  connection after the first bytes (a small receive buffer stalls the sender),
  and only when every server holds are all released at once.

As in :mod:`wirelab.apps.transfer`, a stuck transfer is a result, not an
error: the record says what each side reported and, on failure, the kernel's
socket state (``ss -tina``) of the hosts involved.
"""

import contextlib
import os
import subprocess
import sys

from wirelab.apps import tcpflow, udpflow
from wirelab.apps.runner import AppServer, json_lines, run_client, socket_state
from wirelab.errors import WaitTimeout
from wirelab.proc import LineReader, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
TCPFLOW, TCPMESSAGE, UDPFLOW = (os.path.join(HERE, f) for f in ("tcpflow.py", "tcpmessage.py", "udpflow.py"))
# Beyond a transfer's own timeout: time for the programs to start and report.
GRACE_S = 30


def _ip(tb, node):
    return tb.ip(node) if isinstance(node, str) else node.IP()


def message_transfer(tb, sender, receiver, *, port, nbytes, seed, timeout):
    """Send one ``nbytes`` message (tcpflow's seeded bytes) from ``sender`` to
    ``receiver``:``port``; the sender aborts at ``timeout`` seconds."""
    rcv_ip = _ip(tb, receiver)
    serve = [sys.executable, TCPFLOW, "serve", "--bind", rcv_ip, "--port", port, "--timeout", timeout]
    send = [sys.executable, TCPMESSAGE, "--to", rcv_ip, "--port", port, "--bytes", nbytes,
            "--seed", seed, "--timeout", timeout]
    with AppServer(tb, receiver, serve, name=f"tcpflow serve :{port}", ready=tcpflow.READY_PREFIX) as server:
        client = run_client(tb, sender, send, timeout=timeout + GRACE_S)
        server.wait(timeout + GRACE_S)
    return _record(tb, [sender, receiver], client, server, port=port, bytes=nbytes, seed=seed)


def udp_exchange(tb, sender, receiver, *, port, sizes, seed, df, timeout):
    """Send one datagram per size (DF set if ``df``) and the end mark."""
    rcv_ip = _ip(tb, receiver)
    serve = [sys.executable, UDPFLOW, "serve", "--bind", rcv_ip, "--port", port, "--timeout", timeout]
    send = [sys.executable, UDPFLOW, "send", "--to", rcv_ip, "--port", port, "--sizes", *sizes,
            "--seed", seed, "--df", "on" if df else "off"]
    with AppServer(tb, receiver, serve, name=f"udpflow serve :{port}", ready=udpflow.READY_PREFIX) as server:
        client = run_client(tb, sender, send, timeout=timeout + GRACE_S)
        server.wait(timeout + GRACE_S)
    return _record(tb, [sender, receiver], client, server, port=port, sizes=list(sizes), seed=seed, df=df)


def _record(tb, nodes, client, server, **asked):
    failures = [f"sender: {client.failure}"] if client.failure else []
    if server.failure or server.returncode != 0:
        failures.append(f"receiver: {server.failure or 'exited %s: %s' % (server.returncode, server.stderr_tail(300).strip())}")
    record = {**asked, "sender": client.last_json(), "receiver": server.last_json(),
              "failure": "; ".join(failures) or None,
              "sender_exit": client.returncode, "sender_stderr": client.stderr,
              "receiver_exit": server.returncode, "receiver_stderr": server.stderr_tail(),
              "socket_state_on_failure": None}
    if failures:
        record["socket_state_on_failure"] = socket_state(tb, nodes)
    return record


def concurrent_transfers(tb, flows, *, seed, timeout, hold_rcvbuf=None):
    """Run ``flows`` (dicts: sender, receiver, port, bytes) at the same time.

    Flow ``k`` sends tcpflow's payload of seed ``seed + k``. With
    ``hold_rcvbuf`` (bytes), every receiver holds its connection after the
    first bytes (``tcpflow serve --hold --rcvbuf``) until all hold, then all are
    released together. Returns one record per flow: ``flow`` (as asked),
    ``sender``/``receiver`` (the programs' JSON reports), ``failure`` and exit
    codes; and, when held, ``release`` (whether every server held before the
    release)."""
    records = []
    hold = ["--hold", "--rcvbuf", hold_rcvbuf] if hold_rcvbuf else []
    with contextlib.ExitStack() as stack:
        servers = []
        for f in flows:
            argv = [sys.executable, TCPFLOW, "serve", "--bind", _ip(tb, f["receiver"]), "--port", f["port"],
                    "--timeout", timeout, *hold]
            servers.append(stack.enter_context(AppServer(
                tb, f["receiver"], argv, name=f"tcpflow serve {f['receiver']}:{f['port']}",
                ready=tcpflow.READY_PREFIX, stdin=bool(hold))))
        clients = []
        for k, f in enumerate(flows):   # every server listens: start every client now
            argv = [sys.executable, TCPFLOW, "send", "--to", _ip(tb, f["receiver"]), "--port", f["port"],
                    "--bytes", f["bytes"], "--seed", seed + k, "--timeout", timeout]
            proc = tb.start(f["sender"], argv, name=f"tcpflow send {f['sender']}->:{f['port']}",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            clients.append((proc, LineReader(proc.popen.stdout), LineReader(proc.popen.stderr)))
        all_held = None
        if hold:
            try:   # every server holds (or something died: then release the rest, which report why)
                wait_until(lambda: all(s.saw(tcpflow.HOLDING_PREFIX) or not s.proc.running() for s in servers),
                           timeout, what=f"{len(servers)} tcpflow servers to hold their connections")
            except WaitTimeout:
                pass
            all_held = all(s.saw(tcpflow.HOLDING_PREFIX) for s in servers)
            for server in servers:
                server.tell(tcpflow.GO)
        try:
            wait_until(lambda: not any(p.running() for p, _, _ in clients), timeout + GRACE_S,
                       what=f"{len(clients)} tcpflow senders to finish")
            late = None
        except WaitTimeout as exc:
            late = str(exc)
        for proc, out, err in clients:
            proc.stop()
            out.join(5)
            err.join(5)
        for server in servers:
            server.wait(GRACE_S)
        for k, (f, server, (proc, out, err)) in enumerate(zip(flows, servers, clients)):
            code = proc.popen.returncode
            failures = [f"sender: exited {code}: {err.text().strip()[-300:]}"] if code != 0 else []
            if late and code != 0:
                failures.append(late)
            if server.failure or server.returncode != 0:
                failures.append(f"receiver: {server.failure or 'exited %s' % server.returncode}")
            found = json_lines(out.lines)
            records.append({"flow": dict(f), "seed": seed + k, "sender": found[-1] if found else None,
                            "receiver": server.last_json(), "failure": "; ".join(failures) or None,
                            "sender_exit": code, "receiver_exit": server.returncode,
                            **({"all_held_before_release": all_held} if hold else {})})
    if any(r["failure"] for r in records):
        nodes = sorted({f["sender"] for f in flows} | {f["receiver"] for f in flows})
        for r in records:
            r["socket_state_on_failure"] = socket_state(tb, nodes) if r["failure"] else None
    return records
