"""Message rebuild equals the apps' logs, 100 %, when TCP had to recover lost
packets: drops made by nft rules on the router (native: no netem needed).

::

    h1 10.0.1.2 ------ r1 ------ h2 10.0.2.2
    jsonpair send    faults:     jsonpair serve
    capture h1-eth0  data #2,    capture h2-eth0
                     #5, #9, the
                     first SYN-ACK
                     and FIN

h1 sends JSON messages over TCP (one per connection, one connection at a
time, up to 6 kB: several segments each) and a few UDP datagrams; every
dropped packet must be sent again for the messages to arrive. Both captures,
rebuilt, must give every message the apps logged, whole, once.
"""

import json
import os
import sys

import pytest

from tiny_topo import H2, RouterPair  # noqa: E402  (tests/integration on sys.path)
from wirelab.apps.jsonpair import READY_PREFIX
from wirelab.apps.runner import AppServer, run_client
from wirelab.impair import faults
from wirelab.net.testbed import Testbed
from wirelab.observe.capture import Captures
from wirelab.observe.messages import MessageStream, match_logged, read_event_log
from wirelab.observe.pcap import analyze

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JSONPAIR = os.path.join(REPO, "wirelab", "apps", "jsonpair.py")
PORT = 6190
MESSAGES, DATAGRAMS = 12, 20
DATA_DROPS = (2, 5, 9)


def test_rebuild_agrees_with_the_logs_when_tcp_recovers_drops(tmp_path, host_state):
    dropped = [faults.DropNthDataSegment(n=n, direction="to_server", dport=PORT) for n in DATA_DROPS]
    dropped += [faults.DropSynAck(dport=PORT), faults.DropFirstFin(direction="to_server", dport=PORT)]
    snd_log, rcv_log = str(tmp_path / "sender.jsonl"), str(tmp_path / "receiver.jsonl")
    with Testbed(RouterPair()) as tb:
        handles = [tb.install_fault("r1", f) for f in dropped]
        points = [("h1", "h1-eth0", "sender.pcap"), ("h2", "h2-eth0", "receiver.pcap")]
        with Captures(tb, points, str(tmp_path), snaplen=0) as caps:
            serve = [sys.executable, JSONPAIR, "serve", "--bind", H2, "--port", PORT, "--log", rcv_log]
            with AppServer(tb, "h2", serve, name="jsonpair serve", ready=READY_PREFIX) as server:
                client = run_client(tb, "h1", [sys.executable, JSONPAIR, "send", "--to", H2, "--port", PORT,
                                               "--tcp", MESSAGES, "--udp", DATAGRAMS, "--parallel", 1,
                                               "--max-bytes", 6000, "--log", snd_log], timeout=60)
                server.stop()
        counts = {h.describe(): h.counters() for h in handles}
    info = json.dumps({"client": client.last_json(), "failure": client.failure, "server": server.last_json(),
                       "faults": counts, "captures": [dict(r) for r in caps.results]}, indent=1, default=str)
    assert client.failure is None and client.last_json()["tcp_sent"] == MESSAGES, info
    assert all(c["dropped"] == 1 for c in counts.values()), info
    assert all(r.complete for r in caps.results), info
    logs = [read_event_log(snd_log), read_event_log(rcv_log)]
    assert sum(1 for e in logs[1] if e["transport"] == "tcp") == MESSAGES, info

    # at the receiver: every message both apps logged, rebuilt whole, once
    at_receiver = list(MessageStream(tmp_path / "receiver.pcap", ports=[PORT]))
    res = match_logged(at_receiver, logs, ports=[PORT])
    assert res["ok"], json.dumps({k: v for k, v in res.items() if k != "matched"}, default=str)[:3000]
    assert res["counts"]["matched"] == MESSAGES + DATAGRAMS
    assert all(m.error is None for m in at_receiver)
    # data segment #2 is the first of message 1's four (sizes are seeded): the rest came before it
    assert sum(m.out_of_order_segments for m in at_receiver if m.transport == "tcp") >= 1, info
    # at the sender: what it logged sending, on its wire once
    at_sender = list(MessageStream(tmp_path / "sender.pcap", ports=[PORT]))
    res = match_logged(at_sender, logs[:1], ports=[PORT])
    assert res["ok"] and res["counts"]["matched"] == MESSAGES + DATAGRAMS
    # and the drops happened between the two captures: exactly these packets are missing at the receiver
    sent, got = (_packets(tmp_path / name) for name in ("sender.pcap", "receiver.pcap"))
    assert (sent[0] - got[0], got[1] - sent[1], sent[2] - got[2]) == (len(DATA_DROPS) + 1, 1, len(DATA_DROPS)), info


def _packets(path):
    """(client->server packets, server->client packets, client->server data segments) on PORT."""
    flows = [f for f in analyze(path).flows if f.server.endswith(f":{PORT}")]
    return (sum(f.client_to_server.packets for f in flows), sum(f.server_to_client.packets for f in flows),
            sum(f.client_to_server.data_segments for f in flows))
