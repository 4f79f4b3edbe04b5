r"""DNS from the root down, inside the emulated Internet: real daemons, the lab's own root.

    with DnsHierarchy(tb, run_dir, zones=default_zones(tb.topo)) as dns:
        dns.use_resolver("home1")                 # home1's own resolv.conf -> the ISP's resolver
        record = dns_workload(tb, dns, "home1", case_folder)

Where everything runs on ``topologies/internet.py`` (:func:`default_zones`)::

      home1 --- hgw --- isp ------------ bb1 ... backbone ...
      resolv.conf:      unbound (recursive, DNSSEC validation off)
      nameserver        listens 100.64.0.1 (isp-eth0), asks from 172.16.1.2 (isp-eth1)
      100.64.0.1        root hints: a.root-servers.net. 10.20.1.2 (the lab's, nothing real)
                                      |
               .----------------------+-----------------------.
               v                      v                       v
      campus 10.20.1.2        office 10.1.0.2          cloud: srv1 10.20.30.10
      nsd: root "."           nsd: com. edu. net. org. nsd: amazon.com.
      a.root-servers.net.     a.gtld-servers.net.      srv2 10.20.30.11
                                                       nsd: example.org. uni.edu.

    www.amazon.com. A ?   home1 -> resolver (recursion desired)
                          resolver -> root   : referral  com. NS a.gtld-servers.net. (+ glue)
                          resolver -> TLD    : referral  amazon.com. NS ns.amazon.com. (+ glue)
                          resolver -> srv1   : answer    www.amazon.com. 300 A 10.20.30.10 (aa)
                          resolver -> home1  : answer, now cached (the TTL counts down)

Each server is one ``nsd -d`` and the resolver one ``unbound -d``, started with
``tb.start`` (so the Testbed owns their PIDs), each with its config, zone
files, pid file and log in ``run_dir/dns/<key>/``; every address they listen on
is an existing interface address of their node, so the topology is unchanged.
Each is awaited with a deadline (an authoritative SOA answer from each zone;
the resolver's locally answered ``version.server CH TXT``, which sends nothing
upstream), and stopped by PID on exit.

Hosts' resolvers: Mininet nodes share the machine's file system, so a host's
resolv.conf is a file of this run (``run_dir/dns/resolv/<node>.conf``)
bind-mounted over /etc/resolv.conf *inside that node's mount namespace* only
(mnexec made every node's mounts private); it is unmounted on exit. The
machine's own /etc/resolv.conf is never written; its SHA-256 is recorded on
entry and compared on exit.

The home router does not forward DNS here: the ISP's resolver address is what
a home host is given (by DHCP, ``wirelab.services.dhcp``, or :meth:`DnsHierarchy.use_resolver`).
The resolver asks every server the full name (QNAME minimisation off, as in the
lecture's picture) and fetches no server address it was not given as glue.
Its cache is emptied (``unbound-control reload``, on the resolver node's own
loopback) at the start of each workload, so every case's first query is cold.

Interface (an experiment's case)::

    DnsHierarchy(tb, run_dir, zones=None, qname_minimisation=False)   # context manager
        .resolver_ip  .zones  .use_resolver(node, ip=None)  .flush_cache()  .describe()
    dns_captures(topo, host="home1") -> [CapturePoint]   # case snaplen=DNS_SNAPLEN (whole packets)
    dns_workload(tb, dns, host, folder) -> dict          # also folder/dns.json
    dns_claims(ev, case_name) -> [Claim] (10)            dns_figures(ev, case_name) -> dict
    dns_plot(ev, case_name) -> png path (+ dns-messages.md)   dns_rows(ev, case_name) -> [row]
    decode_dns(pcap) -> [row]                            use_resolver(tb, node, nameservers, run_dir)
    write_resolv_conf(path, nameservers, node=None)      # a run file, never /etc/resolv.conf

Split: the data in :mod:`~wirelab.services.dns_zones` and the daemons' files
in :mod:`~wirelab.services.dns_conf` (pure), the workload in
:mod:`~wirelab.services.dns_workload` (its HTTP server
:mod:`~wirelab.services.dns_web`), the message decoder in
:mod:`~wirelab.services.dns_decode`, claims and the sequence chart in
:mod:`~wirelab.services.dns_claims` and :mod:`~wirelab.services.dns_plot`.
"""

import contextlib
import hashlib
import os
import signal
import subprocess

from wirelab.errors import ConfigError, WirelabError
from wirelab.experiment.cases import CapturePoint
from wirelab.proc import wait_until
from wirelab.services.dns_conf import (nsd_conf, resolv_conf_text, root_hints, unbound_conf, zone_file_name,
                                       zone_text)
from wirelab.services.dns_zones import default_zones

# Also importable from here (loaded on first use, see __getattr__ at the end):
# dns_workload, dns_claims, dns_plot, dns_rows, decode_dns.
__all__ = ["DnsHierarchy", "DnsError", "default_zones", "dns_captures", "use_resolver",
           "write_resolv_conf", "ResolvConfMount", "HOST_RESOLV_CONF", "DNS_SNAPLEN"]

HOST_RESOLV_CONF = "/etc/resolv.conf"
#: A daemon answers within milliseconds of starting; this covers a busy 2-core machine.
READY_TIMEOUT_S = 15.0
#: Whole packets: DNS messages are read from the captures (the house default of
#: 128 bytes would cut a referral's glue).
DNS_SNAPLEN = 0


class DnsError(WirelabError):
    """A DNS daemon did not start or answer, or a resolv.conf could not be put in place."""

    exit_code = 6


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# -- per-host resolv.conf ----------------------------------------------------------

def write_resolv_conf(path, nameservers, node=None, search=()):
    """Write a resolv.conf naming ``nameservers`` at ``path`` (a file of the run,
    never the machine's). Usable alone, e.g. by a DHCP client hook."""
    if os.path.realpath(path) == os.path.realpath(HOST_RESOLV_CONF):
        raise ConfigError(f"dns: refusing to write the machine's {HOST_RESOLV_CONF}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(resolv_conf_text(nameservers, node=node, search=search))
    os.replace(tmp, path)
    return path


def mount_argv(path):
    """The bind mount, run *inside* the node (tb.run: mnexec -a <node's pid>)."""
    return ["mount", "--bind", os.path.abspath(path), HOST_RESOLV_CONF]


def umount_argv():
    return ["umount", HOST_RESOLV_CONF]


def _mnt_ns(pid):
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


class ResolvConfMount:
    """``path`` bind-mounted over /etc/resolv.conf in ``node``'s mount namespace.

    Refuses a node that shares this process's mount namespace (the mount would
    then cover the machine's file). Checked through /proc/<pid>/root, which
    resolves paths in the node's namespace. ``remove()`` unmounts (idempotent);
    registered with the Testbed, so teardown undoes it at the latest.
    """

    def __init__(self, tb, node, path):
        self.tb, self.node, self.path = tb, tb.resolve(node), os.path.abspath(path)
        self.mounted = False
        pid = getattr(self.node, "pid", None)
        if pid is None or _mnt_ns(pid) == _mnt_ns("self"):
            raise ConfigError(f"dns: {getattr(self.node, 'name', node)} has no mount namespace "
                              f"of its own: its resolv.conf would be the machine's")

    def view(self):
        """The resolv.conf the node sees, as its (device, inode)."""
        st = os.stat(f"/proc/{self.node.pid}/root{HOST_RESOLV_CONF}")
        return st.st_dev, st.st_ino

    def apply(self):
        self.tb.run(self.node, mount_argv(self.path), timeout=10)
        self.mounted = True
        self.tb.add_cleanup(f"unmount resolv.conf of {self.node.name}", self.remove)
        st = os.stat(self.path)
        if self.view() != (st.st_dev, st.st_ino):
            raise DnsError(f"dns: {self.node.name} does not see {self.path} as its resolv.conf")
        return self

    def remove(self):
        if not self.mounted:
            return
        self.mounted = False
        shell = getattr(self.node, "shell", None)
        if shell is None or shell.poll() is not None:   # the node is gone, its namespace with it
            return
        self.tb.run(self.node, umount_argv(), timeout=10)


def use_resolver(tb, node, nameservers, run_dir, search=()):
    """``node`` resolves through ``nameservers``: its own resolv.conf in
    ``run_dir/resolv/<node>.conf``, bind-mounted in its namespace. Returns the
    live :class:`ResolvConfMount` (removed at teardown at the latest)."""
    node = tb.resolve(node)
    if isinstance(nameservers, str):
        nameservers = [nameservers]
    path = write_resolv_conf(os.path.join(run_dir, "resolv", f"{node.name}.conf"),
                             nameservers, node=node.name, search=search)
    return ResolvConfMount(tb, node, path).apply()


# -- the daemons ---------------------------------------------------------------------

def dns_captures(topo, host="home1", zones=None):
    """Where a DNS case captures (whole packets: the case's ``snaplen=DNS_SNAPLEN``):
    at ``host``, and on the resolver's upstream interface (its queries into the
    tree; a cached answer must send nothing there)."""
    from wirelab.services.dns_claims import capture_files
    zones = zones or default_zones(topo)
    node = zones.resolver_node
    up = [i for i, a in topo.interfaces(node).items() if a.split("/")[0] == zones.resolver_out_ip]
    if not up:
        raise ConfigError(f"dns: {node} has no interface with {zones.resolver_out_ip}")
    files = capture_files(host)
    return [CapturePoint(host, f"{host}-eth0", files["host"]),
            CapturePoint(node, up[0], files["upstream"])]


class DnsHierarchy:
    """Root, TLD and authoritative nsd servers and an unbound resolver, for the
    life of a ``with`` block. ``zones``: :class:`~wirelab.services.dns_zones.Zones`
    (default: :func:`default_zones` of ``tb.topo``)."""

    def __init__(self, tb, run_dir, zones=None, qname_minimisation=False, log=None):
        self.tb = tb
        self.zones = zones or default_zones(tb.topo)
        self.dir = os.path.join(os.path.abspath(run_dir), "dns")
        self.qname_minimisation = qname_minimisation
        self.log = log or tb.log
        self.procs = {}             # key -> testbed Process ("resolver" for unbound)
        self.exits = {}             # key -> exit code at stop
        self.mounts = []
        self.host_resolv_sha256 = None

    @property
    def resolver_ip(self):
        return self.zones.resolver_ip

    def workdir(self, key):
        return os.path.join(self.dir, key)

    # -- lifecycle --
    def __enter__(self):
        self.host_resolv_sha256 = sha256_of(HOST_RESOLV_CONF)
        try:
            for server in self.zones.servers:
                self._start_nsd(server)
            self._start_unbound()
        except BaseException:
            with contextlib.suppress(DnsError):   # the start's own error is the one to see
                self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.close()
        except DnsError as err:
            if exc is None:
                raise
            self.log(str(err))      # the body's own exception is the one to see
        return False

    def close(self):
        """Unmount every resolv.conf, stop every daemon by PID (resolver first)."""
        errors = []
        for m in reversed(self.mounts):
            try:
                m.remove()
            except WirelabError as exc:
                errors.append(str(exc))
        self.mounts.clear()
        for key in ["resolver"] + [s.key for s in reversed(self.zones.servers)]:
            proc = self.procs.pop(key, None)
            if proc is not None:
                self.exits[key] = proc.stop(signal.SIGTERM)
        if self.host_resolv_sha256 and sha256_of(HOST_RESOLV_CONF) != self.host_resolv_sha256:
            errors.append(f"the machine's {HOST_RESOLV_CONF} changed during the run")
        if errors:
            raise DnsError("dns: " + "; ".join(errors))

    def _write(self, key, files):
        work = self.workdir(key)
        os.makedirs(work, exist_ok=True)
        for name, text in files.items():
            with open(os.path.join(work, name), "w") as f:
                f.write(text)
        return work

    def _start(self, key, node, argv, name):
        log_path = os.path.join(self.workdir(key), "stdout.log")
        with open(log_path, "w") as out:
            self.procs[key] = self.tb.start(node, argv, name=name, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT)
        return self.procs[key]

    def _await(self, key, node, what, probe):
        proc = self.procs[key]
        try:
            wait_until(lambda: not proc.running() or probe(), READY_TIMEOUT_S, what=what)
        except TimeoutError as exc:
            raise DnsError(f"dns: {exc}; log: {self.log_tail(key)}") from None
        if not proc.running():
            raise DnsError(f"dns: {key} on {node} exited {proc.popen.returncode}: {self.log_tail(key)}")

    def log_tail(self, key, limit=300):
        text = ""
        for name in ("stdout.log", "nsd.log", "unbound.log"):
            path = os.path.join(self.workdir(key), name)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    text += f.read()
        return " | ".join(line for line in text.strip().splitlines()[-4:])[-limit:] or "(empty)"

    def _dig_ok(self, node, server_ip, name, rtype, klass="IN", authoritative=True):
        from wirelab.services.dns_workload import dig_yaml
        msg = dig_yaml(self.tb, node, ["@" + server_ip, "+norecurse", "+time=1", "+tries=1",
                                       "-c", klass, "-t", rtype, name], timeout=5)
        return msg is not None and msg.get("status") == "NOERROR" and msg.get("answer") and \
            (not authoritative or "aa" in msg.get("flags", ()))

    def _start_nsd(self, server):
        zones = self.zones.zones_of(server.key)
        work = self.workdir(server.key)
        files = {zone_file_name(z.origin): zone_text(z) for z in zones}
        files["nsd.conf"] = nsd_conf(server, zones, work)
        self._write(server.key, files)
        self._start(server.key, server.node,
                    ["nsd", "-d", "-c", os.path.join(work, "nsd.conf")], f"nsd {server.key}")
        for z in zones:
            self._await(server.key, server.node, f"nsd {server.key} on {server.node} to serve {z.origin}",
                        lambda z=z: self._dig_ok(server.node, server.ip, z.origin, "SOA"))
        self.log(f"dns: nsd {server.role} {server.key} on {server.node} {server.ip}: "
                 + " ".join(z.origin for z in zones))

    def _start_unbound(self):
        z = self.zones
        work = self.workdir("resolver")
        self._write("resolver", {"root.hints": root_hints(z),
                                 "unbound.conf": unbound_conf(z, work, self.qname_minimisation)})
        self._start("resolver", z.resolver_node,
                    ["unbound", "-d", "-c", os.path.join(work, "unbound.conf")], "unbound resolver")
        self._await_resolver("answer")
        self.log(f"dns: unbound resolver on {z.resolver_node} {z.resolver_ip} (upstream from "
                 f"{z.resolver_out_ip})")

    def flush_cache(self):
        """Empty the resolver's cache (``unbound-control reload``, run in the
        resolver's node against its own loopback), so a query is cold again."""
        conf = os.path.join(self.workdir("resolver"), "unbound.conf")
        done = self.tb.run(self.zones.resolver_node, ["unbound-control", "-c", conf, "reload"],
                           timeout=10, check=False)
        if done.returncode != 0 or "ok" not in done.stdout:
            raise DnsError(f"dns: unbound-control reload exited {done.returncode}: "
                           f"{(done.stdout + done.stderr).strip()[-200:]}")
        self._await_resolver("answer after its reload")

    def _await_resolver(self, what):
        # version.server CH TXT is answered by unbound itself: nothing goes upstream.
        z = self.zones
        self._await("resolver", z.resolver_node, f"unbound on {z.resolver_node} to {what}",
                    lambda: self._dig_ok(z.resolver_node, z.resolver_ip, "version.server", "TXT",
                                         klass="CH", authoritative=False))

    # -- hosts --
    def use_resolver(self, node, ip=None, search=()):
        """``node``'s resolv.conf names ``ip`` (default: this resolver), in its namespace only."""
        mount = use_resolver(self.tb, node, [ip or self.resolver_ip], self.dir, search=search)
        self.mounts.append(mount)
        return mount

    def describe(self):
        """JSON-able: the tree, the daemons' PIDs and work folders."""
        return {"zones": self.zones.to_dict(), "dir": self.dir,
                "pids": {k: p.pid for k, p in self.procs.items()},
                "host_resolv_sha256": self.host_resolv_sha256}


_LAZY = {"dns_workload": "dns_workload", "dns_claims": "dns_claims", "dns_figures": "dns_claims",
         "dns_plot": "dns_plot", "dns_rows": "dns_plot", "decode_dns": "dns_decode"}


def __getattr__(name):
    # The workload, claims, chart and decoder live in their own modules; they are
    # reachable from here (the interface) without importing matplotlib up front.
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"wirelab.services.{_LAZY[name]}"), name)
