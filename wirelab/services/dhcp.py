"""DHCP inside the emulated namespaces: dnsmasq serves, ISC dhclient asks.

    with DhcpService(tb, out_dir) as dhcp:
        dhcp.server(ServerConfig("isp", "isp-eth0", ("100.64.0.2", "100.64.0.2"),
                                 "255.255.255.252", "100.64.0.1", dns=("100.64.0.1",), t1_s=4))
        hgw = dhcp.client(ClientConfig("hgw", "hgw-eth0"))
        hgw.wait_bound(timeout=15)          # the hook's BOUND event, kernel configured

**Servers**: one ``dnsmasq --no-daemon`` per serving interface, with every
option on its command line (``--conf-file=/dev/null``: no file of the machine
is read, ``--no-resolv --no-hosts`` neither), DNS off (``--port=0``), bound to
its one interface (``--interface --bind-interfaces``), its lease and pid files
in a work folder of the run. dnsmasq raises any lease shorter than two minutes
to two minutes (:data:`MIN_LEASE_S`), so a short renewal is asked for with the
T1 option (58), which it sends as given.

**Clients**: ``dhclient -d -4`` (foreground) with a generated config, its own
lease and pid files, and the project's hook (``dhcp_hook.sh``, ``-sf``): it
applies the lease with ``ip`` inside the namespace and writes the DNS servers
into the host's resolv.conf *of the run* (``out_dir/dhcp/<node>/resolv.conf``),
never the machine's. dhclient honours the server's T1, randomised to
[3/4 T1, T1] (:func:`dhclient_renewal_range`), and logs the delay it chose.

Evidence in ``out_dir/dhcp/``: per client ``events.jsonl`` (one line per hook
call), ``resolv.conf``, ``dhclient.log`` and ``dhclient.conf``; per server
``dnsmasq.log``, ``argv.json`` and the lease file as it was at the end. The work
folder (live lease and pid files) is removed on close; every daemon is stopped
by its PID (the Testbed's processes).
"""

import dataclasses
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from wirelab.errors import ConfigError, WirelabError
from wirelab.proc import LineReader, wait_until

HOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dhcp_hook.sh")
#: dnsmasq (option.c, dhcp-range): "Leases of a minute or less confuse some
#: clients, notably Apple's": anything under 120 s becomes 120 s.
MIN_LEASE_S = 120
#: dnsmasq prints this once its DHCP socket is bound to the interface.
SERVER_READY = "DHCP, sockets bound exclusively to interface"
READY_TIMEOUT_S = 10.0
BOUND_REASONS = ("BOUND", "RENEW", "REBIND", "REBOOT")
# dhclient -v: "bound to 100.64.0.2 -- renewal in 4 seconds."
RENEWAL_LINE = re.compile(r"bound to (\S+) -- renewal in (\d+) seconds")


class DhcpError(WirelabError):
    """A DHCP daemon did not start, or a client got no lease in time."""

    exit_code = 6


def dhclient_renewal_range(t1):
    """The delays dhclient can choose for a server's T1 (whole seconds).

    ISC dhclient 4.4 (client/dhclient.c, dhcpack): ``renewal = (3*T1 + 3)/4 +
    ((random() % T1) + 3)/4`` in integer arithmetic, so the least and the most
    are those of ``random() % T1`` = 0 and T1 - 1."""
    t1 = int(t1)
    if t1 < 1:
        raise ConfigError(f"dhcp: T1 must be at least 1 s, got {t1}")
    base = (3 * t1 + 3) // 4
    return base + 3 // 4, base + (t1 - 1 + 3) // 4


def _address(text, what):
    try:
        return ipaddress.IPv4Address(str(text))
    except ValueError:
        raise ConfigError(f"dhcp: {what} {text!r} is not an IPv4 address") from None


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """A DHCP server on ``intf`` of ``node``: leases ``pool`` (first, last)."""

    node: str
    intf: str
    pool: tuple
    netmask: str
    router: str
    dns: tuple = ()
    lease_s: int = MIN_LEASE_S
    t1_s: int = None        # None: dnsmasq's default (half the lease)

    def __post_init__(self):
        first, last = (_address(a, "pool address") for a in self.pool)
        router = _address(self.router, "router")
        try:
            net = ipaddress.IPv4Network(f"{router}/{self.netmask}", strict=False)
        except ValueError:
            raise ConfigError(f"dhcp: netmask {self.netmask!r} is not a netmask") from None
        if not (first <= last and first in net and last in net):
            raise ConfigError(f"dhcp: pool {first}-{last} is not a range inside {net}")
        if first <= router <= last:
            raise ConfigError(f"dhcp: the router {router} is inside the pool {first}-{last}")
        for ns in self.dns:
            _address(ns, "DNS server")
        if self.lease_s < MIN_LEASE_S:
            raise ConfigError(f"dhcp: lease_s={self.lease_s}: dnsmasq gives no lease under "
                              f"{MIN_LEASE_S} s (use t1_s for a short renewal)")
        if self.t1_s is not None and not 1 <= self.t1_s < self.lease_s * 7 // 8:
            raise ConfigError(f"dhcp: t1_s={self.t1_s} must be 1..{self.lease_s * 7 // 8 - 1} "
                              "(below T2, 7/8 of the lease)")

    def network(self):
        return ipaddress.IPv4Network(f"{self.router}/{self.netmask}", strict=False)

    def in_pool(self, address):
        first, last = (ipaddress.IPv4Address(a) for a in self.pool)
        return first <= ipaddress.IPv4Address(address) <= last


def dnsmasq_argv(cfg, workdir):
    """dnsmasq's command line for ``cfg``; its files in ``workdir``."""
    argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--port=0", f"--interface={cfg.intf}", "--bind-interfaces",
            f"--dhcp-range={cfg.pool[0]},{cfg.pool[1]},{cfg.netmask},{cfg.lease_s}s",
            f"--dhcp-option=option:router,{cfg.router}"]
    if cfg.dns:
        argv.append(f"--dhcp-option=option:dns-server,{','.join(cfg.dns)}")
    if cfg.t1_s is not None:
        argv.append(f"--dhcp-option=option:T1,{cfg.t1_s}")
    argv += [
        "--dhcp-authoritative",   # the only server on its link: answer at once, NAK strangers
        # Every address on these links comes from this server or the plan: the
        # ping before each new lease would only add 3 s per client.
        "--no-ping",
        "--log-dhcp", "--log-facility=-",
        f"--dhcp-leasefile={os.path.join(workdir, 'leases')}",
        f"--pid-file={os.path.join(workdir, 'dnsmasq.pid')}",
    ]
    return argv


def parse_leases(text):
    """dnsmasq's lease file: ``expiry mac ip hostname client-id`` per line."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append({"expiry": int(parts[0]), "mac": parts[1].lower(), "ip": parts[2],
                        "hostname": None if parts[3] == "*" else parts[3],
                        "client_id": parts[4] if len(parts) > 4 and parts[4] != "*" else None})
    return out


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """dhclient on ``intf`` of ``node``. ``once``: try one time and exit (``-1``)."""

    node: str
    intf: str
    timeout_s: int = 10          # dhclient's "timeout": how long it tries before giving up
    initial_interval_s: int = 1  # first retransmission; dhclient doubles it up to backoff_cutoff
    # Past the cutoff dhclient waits cutoff/2 + random() % cutoff (integers): with
    # a cutoff of 1 that is 0 s, and it sends every message twice at once.
    backoff_cutoff_s: int = 2
    once: bool = False

    def __post_init__(self):
        for name in ("timeout_s", "initial_interval_s", "backoff_cutoff_s"):
            if not 1 <= getattr(self, name) <= 300:
                raise ConfigError(f"dhcp: {name}={getattr(self, name)} must be 1..300 s")


def dhclient_conf(cfg):
    """dhclient.conf for ``cfg``: its timers and the options it asks for."""
    return "\n".join([
        "# dhclient.conf written by wirelab.services.dhcp",
        f"timeout {cfg.timeout_s};",
        f"initial-interval {cfg.initial_interval_s};",
        f"backoff-cutoff {cfg.backoff_cutoff_s};",
        "reboot 0;            # no lease is remembered: start from DISCOVER",
        "select-timeout 0;    # take the first offer",
        "request subnet-mask, broadcast-address, routers, domain-name-servers,",
        "        dhcp-lease-time, dhcp-renewal-time, dhcp-rebinding-time;",
        ""])


def client_paths(out_dir, workdir, name):
    """Where a client's files go: evidence in ``out_dir/<name>``, live files in
    ``workdir`` (``name``: the node, or the node and a tag for a second client)."""
    ev = os.path.join(out_dir, name)
    return {"dir": ev, "conf": os.path.join(ev, "dhclient.conf"), "events": os.path.join(ev, "events.jsonl"),
            "resolv": os.path.join(ev, "resolv.conf"), "log": os.path.join(ev, "dhclient.log"),
            "leases": os.path.join(workdir, f"{name}.leases"), "pid": os.path.join(workdir, f"{name}.pid")}


def dhclient_argv(cfg, paths):
    argv = ["dhclient", "-d", "-v", "-4", "-cf", paths["conf"], "-sf", HOOK,
            "-lf", paths["leases"], "-pf", paths["pid"],
            "-e", f"WIRELAB_RESOLV_CONF={paths['resolv']}",
            "-e", f"WIRELAB_DHCP_EVENTS={paths['events']}"]
    if cfg.once:
        argv.append("-1")
    return argv + [cfg.intf]


def read_events(path):
    """The hook's events (JSON lines); a missing file is no event yet."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def read_nameservers(path):
    """The ``nameserver`` addresses of a resolv.conf file."""
    with open(path) as f:
        return [line.split()[1] for line in f
                if line.split()[:1] == ["nameserver"] and len(line.split()) > 1]


class _Daemon:
    """A process of the Testbed whose output lines are kept (stdout + stderr)."""

    def __init__(self, tb, node, argv, name, log_path):
        self.tb, self.node, self.argv, self.name, self.log_path = tb, node, argv, name, log_path
        self.proc = tb.start(node, argv, name=name, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.reader = LineReader(self.proc.popen.stdout)
        self.exit_code = None

    def tail(self, n=3):
        return " | ".join(self.reader.lines[-n:]) or "no output"

    def stop(self):
        """SIGTERM (dnsmasq and dhclient exit at once, dhclient without releasing),
        then save what it printed."""
        if self.exit_code is None:
            self.exit_code = self.proc.stop(signal.SIGTERM)
            self.reader.join(5)
            with open(self.log_path, "w") as f:
                f.write(self.reader.text() + "\n")
        return self.exit_code


class DhcpServer(_Daemon):
    def __init__(self, tb, cfg, workdir, evidence_dir):
        self.cfg, self.workdir, self.evidence_dir = cfg, workdir, evidence_dir
        os.makedirs(workdir, exist_ok=True)
        os.makedirs(evidence_dir, exist_ok=True)
        argv = dnsmasq_argv(cfg, workdir)
        with open(os.path.join(evidence_dir, "argv.json"), "w") as f:
            json.dump({"argv": argv, "config": dataclasses.asdict(cfg)}, f, indent=2)
        super().__init__(tb, cfg.node, argv, f"dnsmasq {cfg.node}:{cfg.intf}",
                         os.path.join(evidence_dir, "dnsmasq.log"))
        try:
            wait_until(lambda: self.reader.has(SERVER_READY) or not self.proc.running(), READY_TIMEOUT_S,
                       what=f"dnsmasq on {cfg.node} to bind {cfg.intf}")
        except TimeoutError:
            raise DhcpError(f"dhcp: dnsmasq on {cfg.node}:{cfg.intf} did not bind within "
                            f"{READY_TIMEOUT_S:g} s: {self.tail()}") from None
        if not self.proc.running():
            self.reader.join(2)
            raise DhcpError(f"dhcp: dnsmasq on {cfg.node}:{cfg.intf} exited "
                            f"{self.proc.popen.returncode}: {self.tail()}")

    def leases_text(self):
        try:
            with open(os.path.join(self.workdir, "leases")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        code = super().stop()
        with open(os.path.join(self.evidence_dir, "leases"), "w") as f:
            f.write(self.leases_text())
        return code


class DhcpClient(_Daemon):
    def __init__(self, tb, cfg, workdir, out_dir, name=None):
        self.cfg = cfg
        self.name = name or cfg.node
        self.paths = client_paths(out_dir, workdir, self.name)
        os.makedirs(self.paths["dir"], exist_ok=True)
        with open(self.paths["conf"], "w") as f:
            f.write(dhclient_conf(cfg))
        super().__init__(tb, cfg.node, dhclient_argv(cfg, self.paths), f"dhclient {cfg.node}:{cfg.intf}",
                         self.paths["log"])

    def events(self):
        return read_events(self.paths["events"])

    def wait_event(self, reasons, count, timeout):
        """Wait until the hook reported ``count`` events with a reason in
        ``reasons``, each applied (status ok); return the last of them."""
        what = f"{'/'.join(reasons)} #{count}"

        def found():
            hits = [e for e in self.events() if e["reason"] in reasons and e["status"] == "ok"]
            return hits[count - 1] if len(hits) >= count else None
        try:
            wait_until(lambda: found() is not None or not self.proc.running(), timeout,
                       what=f"{self.cfg.node} to get {what}")
        except TimeoutError:
            raise DhcpError(f"dhcp: {self.cfg.node} got no {what} within {timeout:g} s: "
                            f"{self.tail()}") from None
        hit = found()
        if hit is None:
            self.reader.join(2)
            raise DhcpError(f"dhcp: dhclient on {self.cfg.node} exited {self.proc.popen.returncode} "
                            f"before {what}: {self.tail()}")
        return hit

    def wait_bound(self, timeout):
        return self.wait_event(("BOUND",), 1, timeout)


class DhcpService:
    """The DHCP servers and clients of one run: started here, stopped on close.

    ``out_dir``: the evidence folder (``<results>/dhcp``). The daemons' live
    files go to a private work folder, removed on close."""

    def __init__(self, tb, out_dir):
        self.tb = tb
        self.out_dir = os.path.abspath(out_dir)
        self.workdir = None
        self.servers, self.clients = [], []

    def __enter__(self):
        os.makedirs(self.out_dir, exist_ok=True)
        self.workdir = tempfile.mkdtemp(prefix=f"wirelab-dhcp-{self.tb.run_id}-")
        self.tb.add_cleanup("dhcp: stop daemons, remove work folder", self.close)
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def server(self, cfg):
        srv = DhcpServer(self.tb, cfg, os.path.join(self.workdir, f"server-{cfg.node}"),
                         os.path.join(self.out_dir, f"server-{cfg.node}"))
        self.servers.append(srv)
        return srv

    def client(self, cfg):
        cli = DhcpClient(self.tb, cfg, self.workdir, self.out_dir)
        self.clients.append(cli)
        return cli

    def once(self, cfg, deadline_s):
        """Run a one-shot client (``cfg.once``) to its end: {exit_code, last_line,
        seconds, events}; ``deadline_s`` bounds it (it gives up after its timeout)."""
        if not cfg.once:
            raise ConfigError("dhcp: once() needs ClientConfig(once=True)")
        cli = DhcpClient(self.tb, cfg, self.workdir, self.out_dir, name=f"{cfg.node}-once")
        started = time.monotonic()
        try:
            wait_until(lambda: not cli.proc.running(), deadline_s,
                       what=f"dhclient -1 on {cfg.node} to give up")
        except TimeoutError:
            pass
        seconds = time.monotonic() - started
        code = cli.stop()
        lines = [line for line in cli.reader.lines if line.strip()]
        return {"exit_code": code, "last_line": lines[-1] if lines else "", "seconds": round(seconds, 3),
                "lines": lines, "events": cli.events(), "argv": cli.argv, "config": dataclasses.asdict(cfg)}

    def close(self):
        """Stop clients, then servers (their lease files saved), remove the work folder."""
        for daemon in reversed(self.clients + self.servers):
            daemon.stop()
        if self.workdir and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir)

    def describe(self):
        """JSON-able: PIDs and what each runs, for run.json."""
        return {"workdir": self.workdir,
                "servers": [{"node": s.cfg.node, "intf": s.cfg.intf, "pid": s.pid,
                             "config": dataclasses.asdict(s.cfg)} for s in self.servers],
                "clients": [{"node": c.cfg.node, "intf": c.cfg.intf, "pid": c.pid,
                             "config": dataclasses.asdict(c.cfg)} for c in self.clients]}
