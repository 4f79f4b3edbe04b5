"""A fabricated ``heartbeats`` results folder, without root or netem.

Every case of the experiment is played out in-process: each chunkserver's
heartbeats on its timeline (its own log written by the real EventLog), a
seeded model of netem on its link (Linux 6.1's netem_enqueue: duplication,
loss -- again for the duplicate --, reorder or delay with jitter), the
partition window, a TCP stream that delivers everything in order, late; the
arrivals fed, with check ticks, to the real main server's logic
(:class:`~wirelab.apps.gfs.main_server.MainServer`), which writes the server
log; the capture at the server written as a pcap (:mod:`wirelab.observe.msgsynth`);
``case.json``, ``run.json`` and ``params.json`` as a run writes them.
"""

import os
import random
import sys

from wirelab.apps.gfs import protocol
from wirelab.apps.gfs.main_server import MainServer
from wirelab.experiment.evidence import write_json
from wirelab.observe import msgsynth

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "experiments"))

from heartbeats import Heartbeats, HeartbeatsParams  # noqa: E402
from topologies.cluster import ClusterTopo  # noqa: E402

MANAGER = "10.1.0.2"
T0 = 1_800_000_000.0
WIRE_S = 0.00005          # the link's own transit


def ip_of(node):
    return f"10.1.0.{10 + int(node[1:])}"


def copies(spec, rng, sent):
    """Arrival times of one datagram's copies through netem ``spec`` (keywords)."""
    loss, dup = spec.get("loss", 0) / 100, spec.get("duplicate", 0) / 100
    reorder, delay, jitter = spec.get("reorder", 0) / 100, spec.get("delay", 0) / 1000, spec.get("jitter", 0) / 1000
    count = 1 + (rng.random() < dup) - (rng.random() < loss)

    def one():
        if reorder and rng.random() < reorder:
            return sent + WIRE_S
        return sent + delay + (rng.uniform(-jitter, jitter) if jitter else 0.0) + WIRE_S
    out = []
    if count == 2 and rng.random() >= loss:   # the duplicate meets loss again
        out.append(one())
    if count >= 1:
        out.append(one())
    return out


def simulate_case(root, case, params, rng, t0):
    folder = os.path.join(root, case.name)
    os.makedirs(folder, exist_ok=True)
    T, n, port = params.interval_ms / 1000, case.args["count"], case.args["port"]
    specs = {x.node: x.spec.to_dict() for x in case.netem}
    fault = case.args.get("fault")
    record = {"port": port, "interval": T, "count": n, "server_log": "server.jsonl", "chunkservers": {},
              "fault": None, "failure": None}
    window = None
    if fault:
        down = t0 + fault["after"] * T + 0.031
        up = down + fault["seconds"]
        window = (down, up + 0.0004)
        record["fault"] = {"chunkserver": fault["name"], "node": fault["node"],
                           "port": f"{fault['lan']}:{fault['intf']}", "seconds": fault["seconds"],
                           "down": [down, down + 0.0004], "up": [up, up + 0.0004]}
    arrivals, tcp_lines = [], {}
    for i, cs in enumerate(case.args["chunkservers"]):
        name, node, transport = cs["name"], cs["node"], cs.get("transport", "udp")
        src, dst = (ip_of(node), 40000 + i), (MANAGER, port)
        start, spec, last = t0 + 0.013 * i, specs.get(node, {}), 0.0
        lines = []
        with protocol.EventLog(os.path.join(folder, f"{name}.jsonl")) as log:
            for s in range(n):
                sent = start + s * T + rng.uniform(0, 0.002)
                msg = protocol.heartbeat(name, s, sent)
                log.message(sent, "send", transport, src, dst, msg)
                data = protocol.encode(msg)
                if transport == "tcp":   # everything, in order; a lost segment costs an RTO
                    late = spec.get("delay", 0) / 1000 + (0.2 if rng.random() < spec.get("loss", 0) / 100 else 0)
                    last = max(sent + late + WIRE_S, last + 1e-5)
                    arrivals.append((last, "tcp", src, dst, data))
                    lines.append(data + b"\n")
                elif not (window and name == fault["name"] and window[0] <= sent <= window[1]):
                    arrivals += [(a, "udp", src, dst, data) for a in copies(spec, rng, sent)]
        if lines:
            tcp_lines[src] = (dst, b"".join(lines))
        record["chunkservers"][name] = {
            "node": node, "transport": transport, "log": f"{name}.jsonl", "exit": 0, "stderr": "",
            "summary": {"role": "chunkserver", "chunkserver": name, "transport": transport, "interval": T,
                        "sent": n, "send_errors": {}, "ended": "count", "src": list(src), "start": start,
                        "seqs": n, "finish": "server closed" if transport == "tcp" else "udp",
                        "lateness_ms": {"max": 2.0, "p99": 2.0, "over_half_interval": 0}}}
    arrivals.sort(key=lambda a: a[0])
    tick = T / 10
    with protocol.EventLog(os.path.join(folder, "server.jsonl")) as log:
        server = MainServer(log, T, k=params.k, phi_threshold=params.phi_threshold,
                            min_std=params.min_std_ms / 1000, acceptable_pause=params.acceptable_pause_ms / 1000)
        next_tick = t0 + tick
        for t, transport, src, dst, data in arrivals:
            while next_tick < t:
                server.check(next_tick)
                next_tick += tick
            server.receive(data, transport, src, dst, t)
        end = arrivals[-1][0] + 0.2
        while next_tick < end:
            server.check(next_tick)
            next_tick += tick
        server.check(end)
    record["server"] = {**server.summary(), "check_every": tick, "ended_at": end, "ended": "signal SIGINT",
                        "address": [MANAGER, port]}
    record.update(server_exit=0, stopped_server_at=end)
    packets = [(int(t * 1e9), msgsynth.udp_packet(src[0], dst[0], src[1], dst[1], data, ip_id=j & 0xFFFF))
               for j, (t, transport, src, dst, data) in enumerate(arrivals) if transport == "udp"]
    for src, (dst, stream) in tcp_lines.items():
        first = min(t for t, tr, s, _, _ in arrivals if tr == "tcp" and s == src)
        packets += [p[:2] for p in msgsynth.tcp_connection(src, dst, stream, mss=1448, t0=int(first * 1e9),
                                                            step=1000)]
    packets.sort(key=lambda p: p[0])
    with open(os.path.join(folder, "server.pcap"), "wb") as f:
        f.write(msgsynth.pcap_file(packets))
    intf = {x.node: x.intf for x in case.netem}
    write_json(os.path.join(folder, "case.json"), {
        "name": case.name, "args": case.args,
        "netem": [{"kind": "netem", "node": node, "intf": intf[node], "spec": spec, "readback": None,
                   "counters": None, "removed": True} for node, spec in specs.items()],
        "faults": [], "captures": [{"name": "server.pcap", "packets": len(packets), "dropped_by_kernel": 0,
                                    "dropped_by_interface": 0, "problems": []}],
        "workload": record, "error": None, "seconds": end - t0})


def fabricate(root, params=None, seed=7):
    """Write a whole results folder for ``params`` (default: the experiment's
    defaults) at ``root``; return the params."""
    params = params or HeartbeatsParams()
    os.makedirs(root, exist_ok=True)
    exp = Heartbeats(params, out_dir=str(root))
    exp.topo = ClusterTopo(workers=params.workers(), clients=1)
    rng = random.Random(seed)
    cases = exp.cases()
    write_json(os.path.join(root, "params.json"), {"experiment": "heartbeats", "params": params})
    for i, case in enumerate(cases):
        simulate_case(str(root), case, params, rng, T0 + 100 * i)
    write_json(os.path.join(root, "run.json"), {"cases": [c.name for c in cases]})
    return params
