"""Run the main server and its chunkservers on a Testbed, with an optional partition.

:func:`heartbeat_run` is one case's workload: the main server on the manager
(READY awaited), every chunkserver started at once, each on its own host and
link; optionally one chunkserver's link cut (its bridge port set down) once
the server has logged enough of its heartbeats, for a set time, then
restored; all chunkservers awaited under one deadline, the heartbeats still in
netem's delay line drained, the server stopped (SIGINT) for its summary.
Returns a JSON-able record: what each program reported, the fault window
(wall-clock times just before and after each netlink change), failures.

The handles (:class:`PortDown`, :class:`StaticNeighbours`) undo what they did
at the end of a ``with`` block, and at the Testbed's teardown at the latest.
"""

import json
import os
import subprocess
import sys
import threading
import time

from wirelab.apps.gfs import protocol
from wirelab.apps.runner import AppServer, json_lines
from wirelab.errors import ConfigError, WaitTimeout
from wirelab.net.mtu import link_index
from wirelab.proc import LineReader, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNKSERVER, MAIN_SERVER = (os.path.join(HERE, f) for f in ("chunkserver.py", "main_server.py"))
# include/uapi/linux/neighbour.h NUD_PERMANENT: never re-validated, never expires.
NUD_PERMANENT = 0x80
# Time for the programs to start and report, beyond their own run time.
GRACE_S = 30.0


class PortDown:
    """``intf`` of ``node`` (a LAN bridge's port) administratively down, then up.

    Setting the bridge-side end down takes the carrier away from the host's
    end: the host's routes and addresses stay, its datagrams are dropped at
    the veth (no error to the sender) -- a silent partition, healed by up."""

    def __init__(self, tb, node, intf):
        self.tb, self.node, self.intf = tb, tb.resolve(node).name, intf
        self.live = False
        self.times = {}

    def _set(self, state):
        with self.tb.iproute(self.node) as ipr:
            index = link_index(ipr, self.intf)
            before = time.time()
            ipr.link("set", index=index, state=state)
            after = time.time()
            flags = ipr.get_links(index)[0]["flags"]
        return [before, after], bool(flags & 1)   # IFF_UP

    def down(self):
        self.live = True
        self.tb.add_cleanup(f"bring {self.node}:{self.intf} up again", self.up)
        self.times["down"], up = self._set("down")
        if up:
            raise ConfigError(f"{self.node}:{self.intf} still up after 'set down'")
        return self

    def up(self):
        if not self.live:
            return False
        self.live = False
        self.times["up"], up = self._set("up")
        if not up:
            raise ConfigError(f"{self.node}:{self.intf} still down after 'set up'")
        return True


class StaticNeighbours:
    """Permanent ARP entries both ways between ``hub`` and each of ``spokes`` on ``lan``.

    Why: netem on a host's egress drops its ARP requests and replies too; an
    entry that expires mid-run would then fail to resolve and lose heartbeats
    netem was never asked to lose. Permanent entries are never re-validated.
    Removed again (the kernel learns them anew) by :meth:`remove`."""

    def __init__(self, tb, lan, hub, spokes):
        self.tb, self.lan, self.hub, self.spokes = tb, lan, hub, list(spokes)
        self.entries = []     # (node, intf, ip, mac)
        self.live = False

    def _end(self, node):
        intf = self.tb.topo.interface_facing(node, self.lan)
        with self.tb.iproute(node) as ipr:
            mac = ipr.get_links(link_index(ipr, intf))[0].get_attr("IFLA_ADDRESS")
        return intf, self.tb.ip(node), mac

    def apply(self):
        self.live = True
        self.tb.add_cleanup(f"remove the permanent ARP entries of {self.hub}", self.remove)
        hub = self._end(self.hub)
        for spoke in self.spokes:
            end = self._end(spoke)
            self.entries += [(spoke, end[0], hub[1], hub[2]), (self.hub, hub[0], end[1], end[2])]
        for node, intf, ip, mac in self.entries:
            with self.tb.iproute(node) as ipr:
                ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=link_index(ipr, intf), state=NUD_PERMANENT)
        return self

    def readback(self):
        out = {}
        for node, intf, ip, mac in self.entries:
            with self.tb.iproute(node) as ipr:
                found = ipr.get_neighbours(dst=ip, ifindex=link_index(ipr, intf))
            out[f"{node} {ip}"] = [{"lladdr": n.get_attr("NDA_LLADDR"), "permanent": bool(n["state"] & NUD_PERMANENT)}
                                   for n in found]
        return out

    def remove(self):
        if not self.live:
            return False
        self.live = False
        for node, intf, ip, _ in self.entries:
            with self.tb.iproute(node) as ipr:
                try:
                    ipr.neigh("del", dst=ip, ifindex=link_index(ipr, intf))
                except Exception:   # already gone (the link went away): nothing to undo
                    pass
        return True


class LogFollower:
    """Reads an event log as it grows; counts fresh ``recv`` lines per chunkserver."""

    def __init__(self, path):
        self.path, self.offset = path, 0
        self.highest = {}
        self.received = {}

    def poll(self):
        if not os.path.exists(self.path):
            return self
        with open(self.path) as f:
            f.seek(self.offset)
            for line in f:
                if not line.endswith("\n"):
                    break
                self.offset += len(line.encode())
                if '"event":"recv"' in line:
                    msg = json.loads(line)["message"]
                    name = msg["chunkserver"]
                    self.received[name] = self.received.get(name, 0) + 1
                    self.highest[name] = max(self.highest.get(name, -1), msg["seq"])
        return self


def server_argv(ip, port, interval, log, detector):
    """The main server's command line; ``detector``: k, grace, phi_threshold,
    min_std, acceptable_pause (seconds), check_every."""
    argv = [sys.executable, MAIN_SERVER, "--bind", ip, "--port", port, "--interval", interval, "--log", log]
    for key, value in detector.items():
        if value is not None:
            argv += ["--" + key.replace("_", "-"), value]
    return argv


def heartbeat_run(tb, folder, *, manager, chunkservers, port, interval, count, detector, fault=None,
                  drain_s=1.0):
    """One case: ``chunkservers`` (dicts: node, name, transport) send ``count``
    heartbeats each, every ``interval`` s, to the main server on ``manager``.

    ``fault``: dict(node, lan, intf, after, seconds) -- once the server has
    ``after`` heartbeats of ``node``, its bridge port ``lan:intf`` goes down
    for ``seconds``. ``drain_s``: how long heartbeats may still be in flight
    after the last chunkserver exits (netem's longest delay and more)."""
    ip = tb.ip(manager)
    server_log = os.path.join(folder, "server.jsonl")
    record = {"port": port, "interval": interval, "count": count, "server_log": "server.jsonl",
              "chunkservers": {}, "fault": None, "failure": None}
    failures = []
    run_time = count * interval
    argv = server_argv(ip, port, interval, server_log, detector)
    with AppServer(tb, manager, argv, name=f"gfs main_server :{port}") as server:
        procs = {}
        for cs in chunkservers:
            log = f"{cs['name']}.jsonl"
            cmd = [sys.executable, CHUNKSERVER, "--name", cs["name"], "--to", ip, "--port", port,
                   "--interval", interval, "--count", count, "--transport", cs.get("transport", "udp"),
                   "--log", os.path.join(folder, log)]
            proc = tb.start(cs["node"], cmd, name=f"chunkserver {cs['name']}",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs[cs["name"]] = (cs, proc, LineReader(proc.popen.stdout), LineReader(proc.popen.stderr), log)
        follower = LogFollower(server_log)
        if fault:
            record["fault"] = _partition(tb, fault, follower, run_time, failures)
        try:
            wait_until(lambda: not any(p.running() for _, p, _, _, _ in procs.values()), run_time + GRACE_S,
                       what=f"{len(procs)} chunkservers to finish")
        except WaitTimeout as exc:
            failures.append(str(exc))
        for name, (cs, proc, out, err, log) in procs.items():
            proc.stop()
            out.join(5)
            err.join(5)
            found = json_lines(out.lines)
            record["chunkservers"][name] = {
                "node": cs["node"], "transport": cs.get("transport", "udp"), "log": log,
                "summary": found[-1] if found else None, "exit": proc.popen.returncode,
                "stderr": err.text()[-1000:]}
            if proc.popen.returncode != 0:
                failures.append(f"chunkserver {name}: exited {proc.popen.returncode}: {err.text().strip()[-300:]}")
        # Heartbeats may still sit in netem's delay line: wait for each one's
        # last number, at most drain_s (it may have been lost).
        last = {n: (r["summary"] or {}).get("seqs", 0) - 1 for n, r in record["chunkservers"].items()}
        try:
            wait_until(lambda: all(follower.poll().highest.get(n, -1) >= s for n, s in last.items()), drain_s,
                       what="the last heartbeats")
        except WaitTimeout:
            pass
        record["stopped_server_at"] = time.time()
        server.stop()
        record["server"] = server.last_json()
        record["server_exit"] = server.returncode
        if server.returncode not in (0,) or record["server"] is None:
            failures.append(f"main server: exited {server.returncode}: {server.stderr_tail(300).strip()}")
    record["failure"] = "; ".join(failures) or None
    return record


def _partition(tb, fault, follower, run_time, failures):
    """Wait for ``after`` heartbeats of the node, cut its port for ``seconds``, restore."""
    name = fault["name"]
    try:
        wait_until(lambda: follower.poll().received.get(name, 0) >= fault["after"], run_time + GRACE_S,
                   what=f"{fault['after']} heartbeats of {name} at the server")
    except WaitTimeout as exc:
        failures.append(str(exc))
        return None
    port = PortDown(tb, fault["lan"], fault["intf"]).down()
    try:
        # Pacing, not synchronisation: the partition lasts a set time.
        threading.Event().wait(fault["seconds"])
    finally:
        port.up()
    return {"chunkserver": name, "node": fault["node"], "port": f"{fault['lan']}:{fault['intf']}",
            "seconds": fault["seconds"], "down": port.times["down"], "up": port.times["up"]}


def read_logs(folder, record):
    """(server events, {chunkserver: its own events}) from a case folder."""
    server = protocol.read_log(os.path.join(folder, record["server_log"]))
    own = {n: protocol.read_log(os.path.join(folder, c["log"])) for n, c in record["chunkservers"].items()
           if os.path.exists(os.path.join(folder, c["log"]))}
    return server, own
