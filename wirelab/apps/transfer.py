"""A known TCP transfer between two emulated hosts (``tcpflow``), as a workload.

The receiver runs ``tcpflow serve`` (it says ``LISTENING`` once bound), the
sender ``tcpflow send`` with seeded bytes; both print one JSON object. The
record says what each side reported and, when something failed, why and the
kernel's socket state on both hosts. A stuck transfer is a result, not an
error: its claims (sha256 first) fail in verify.
"""

import os
import sys

from wirelab.apps import tcpflow
from wirelab.apps.runner import AppServer, run_client, socket_state

TCPFLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcpflow.py")
# Beyond the transfer's own timeout: time for the programs to start and report.
GRACE_S = 30


def tcp_transfer(tb, sender, receiver, *, port, nbytes, seed, timeout):
    """Send ``nbytes`` seeded bytes from ``sender`` to ``receiver``:``port``."""
    rcv_ip = tb.ip(receiver) if isinstance(receiver, str) else receiver.IP()
    serve = [sys.executable, TCPFLOW, "serve", "--bind", rcv_ip, "--port", port, "--timeout", timeout]
    send = [sys.executable, TCPFLOW, "send", "--to", rcv_ip, "--port", port, "--bytes", nbytes,
            "--seed", seed, "--timeout", timeout]
    with AppServer(tb, receiver, serve, name=f"tcpflow serve :{port}",
                   ready=tcpflow.READY_PREFIX) as server:
        client = run_client(tb, sender, send, timeout=timeout + GRACE_S)
        server.wait(timeout + GRACE_S)
    failures = [f"sender: {client.failure}"] if client.returncode is None else []
    if server.failure:
        failures.append(f"receiver: {server.failure}")
    record = {"port": port, "bytes": nbytes, "seed": seed,
              "sender": client.last_json(), "receiver": server.last_json(),
              "failure": "; ".join(failures) or None,
              "sender_exit": client.returncode, "sender_stderr": client.stderr,
              "receiver_exit": server.returncode, "receiver_stderr": server.stderr_tail(),
              "socket_state_on_failure": None}
    if client.returncode != 0 or server.returncode != 0:
        record["socket_state_on_failure"] = socket_state(tb, [sender, receiver])
    return record
