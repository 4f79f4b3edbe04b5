"""The context manager that owns a running network.

    with Testbed(LineTopo(n=3)) as tb:
        tb.run(tb['h1'], ['ping', '-c1', tb.ip('h2')], timeout=5)

On entry it cleans what dead runs left (see :mod:`wirelab.net.runledger`), gives this
run an id, labels everything it starts with that id, builds and starts the
Mininet network (``controller=None``, every node in its own namespace), and
returns. On exit -- success, exception, SIGINT or SIGTERM -- it runs the
impairments still live (netem qdiscs, fault rules: ``tb.impairments``), the
registered cleanups in reverse order, stops registered processes (SIGINT first,
so tcpdump flushes its pcap), restores router sysctls, terminates the nodes and
waits until no process of the run is left. Only then does it return.
"""

import contextlib
import ipaddress
import os
import resource
import signal
import subprocess
import sys

from wirelab.errors import ConfigError, Interrupted
from wirelab.impair.impairments import Impairments
from wirelab.net.runledger import (LABEL, RunLedger, clean_stale_runs, kill_and_wait, labelled_pids,
                                   new_run_id, proc_start_time)
from wirelab.net.netns import iproute
from wirelab.proc import popen as _popen
from wirelab.proc import run as _run
from wirelab.proc import wait_until


@contextlib.contextmanager
def signals_raise():
    """Turn SIGTERM (and SIGHUP) into :class:`Interrupted` for the body; SIGINT
    already raises KeyboardInterrupt. Restores the previous handlers."""
    def handler(signum, _frame):
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")
    saved = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            saved[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_blocked():
    """Hold SIGINT/SIGTERM/SIGHUP while cleaning up, so a second Ctrl-C cannot
    abandon half a teardown; they are delivered afterwards."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Process:
    """A process the testbed started in a node; stopped at teardown."""

    def __init__(self, node, argv, popen, name):
        self.node, self.argv, self.popen, self.name = node, argv, popen, name
        self.pid = popen.pid
        self.start_time = proc_start_time(self.pid)

    def running(self):
        return self.popen.poll() is None

    def stop(self, sig=signal.SIGINT, timeout=5.0):
        """Send ``sig``, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


class Testbed:
    """Owns one running Mininet network built from a ``Topo``.

    ``topo``: a Mininet ``Topo`` (see ``topologies/``). ``log``: a callable for
    progress lines (default: silent).
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, topo, log=None, stale_cleanup=True):
        self.topo = topo
        self.log = log or (lambda _msg: None)
        self.stale_cleanup = stale_cleanup
        self.run_id = None
        self.net = None
        self.ledger = None
        self._cleanups = []
        #: Live netem and fault handles (:mod:`wirelab.impair.impairments`).
        self.impairments = Impairments(self)
        self._processes = []
        self._saved_label = None
        self._signals = None

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self):
        from wirelab.net.preflight import require_basics
        require_basics()
        if self.stale_cleanup:
            clean_stale_runs(log=self.log)
        self.run_id = new_run_id()
        self._saved_label = os.environ.get(LABEL)
        self._signals = signals_raise()
        self._signals.__enter__()
        try:
            os.environ[LABEL] = self.run_id
            self.ledger = RunLedger(self.run_id)
            self._build()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc):
        self._teardown()
        return False

    def _build(self):
        from mininet.net import Mininet
        from wirelab.net.nodes import MininetHost, NetlinkLink
        # Mininet.init() would raise machine-wide sysctls (fixLimits) and never
        # restore them; we only need more file descriptors in this process.
        Mininet.inited = True
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        self.net = Mininet(topo=None, controller=None, host=MininetHost, link=NetlinkLink,
                           build=False, autoSetMacs=False)
        self.log(f"run {self.run_id}: building {type(self.topo).__name__} "
                 f"({len(self.topo.nodes())} nodes, {len(self.topo.links())} links)")
        # Build node by node so each shell is in the ledger as soon as it exists.
        for name in self.topo.hosts():
            node = self.net.addHost(name, **self.topo.nodeInfo(name))
            self.ledger.add_pid(node.pid)
        for name in self.topo.switches():
            params = dict(self.topo.nodeInfo(name))
            params.setdefault("inNamespace", True)
            node = self.net.addSwitch(name, **params)
            self.ledger.add_pid(node.pid)
        for src, dst, params in self.topo.links(sort=True, withKeys=False, withInfo=True):
            self.net.addLink(**params)
        self.net.configHosts()
        self.net.built = True
        self.net.start()
        self._apply_declared_netem()

    def _apply_declared_netem(self):
        """netem declared in the topology on a link end (intf param ``netem``):
        applied to that interface's egress, removed at teardown."""
        declared = [(node, intf) for node in self.net.hosts + self.net.switches
                    for intf in node.intfList() if intf.params.get("netem") is not None]
        for node, intf in declared:
            handle = self.apply_netem(node, intf.name, intf.params["netem"])
            self.log(f"netem on {intf.name} (what {node.name} sends): {handle.spec}")

    def _teardown(self):
        errors = []
        with signals_blocked():
            try:
                errors += self.impairments.remove_all()
                for description, fn in reversed(self._cleanups):
                    try:
                        fn()
                    except Exception as exc:  # keep going: the rest must still go
                        errors.append(f"{description}: {exc}")
                self._cleanups.clear()
                for proc in reversed(self._processes):
                    try:
                        proc.stop()
                    except Exception as exc:
                        errors.append(f"stop {proc.name}: {exc}")
                self._processes.clear()
                if self.net is not None:
                    for node in self.net.hosts + self.net.switches:
                        try:
                            node.terminate()
                        except Exception as exc:
                            errors.append(f"terminate {node.name}: {exc}")
                if self.run_id is not None:
                    try:
                        self._reap_run()
                    except Exception as exc:  # a process that will not die (D state)
                        errors.append(f"reap: {exc}")
            finally:
                # Only a run whose processes are all gone may drop its ledger:
                # otherwise the next run (or make clean-net) must find them.
                if self.ledger is not None and not any("reap:" in e for e in errors):
                    self.ledger.remove()
                if self._saved_label is None:
                    os.environ.pop(LABEL, None)
                else:
                    os.environ[LABEL] = self._saved_label
                if self._signals is not None:
                    self._signals.__exit__(None, None, None)
                    self._signals = None
                self.net = None
        if errors:
            # Always shown: something may have been left behind.
            print("wirelab: teardown problems: " + "; ".join(errors), file=sys.stderr)

    def _reap_run(self):
        """Wait for every process labelled with this run to exit; kill stragglers."""
        def remaining():
            return labelled_pids(self.run_id)
        try:
            wait_until(lambda: not remaining(), 5.0, what="node processes to exit")
        except TimeoutError:
            kill_and_wait({p: proc_start_time(p) for p in remaining()})

    # -- access --------------------------------------------------------------
    def __getitem__(self, name):
        return self.net[name]

    def node(self, name):
        try:
            return self.net[name]
        except KeyError:
            raise ConfigError(f"no node named {name!r} in this topology") from None

    def resolve(self, node):
        """A node given by name or as a node object -> the node object."""
        return self.node(node) if isinstance(node, str) else node

    @property
    def routers(self):
        from wirelab.net.nodes import LinuxRouter
        return [n for n in self.net.hosts if isinstance(n, LinuxRouter)]

    @property
    def hosts(self):
        from wirelab.net.nodes import LinuxRouter
        return [n for n in self.net.hosts if not isinstance(n, LinuxRouter)]

    def ip(self, name, intf=None, family=4):
        """``name``'s address (of ``intf``, else its first interface); ``family=6``:
        the IPv6 address the topology gave that interface (link param ``addrs6``)."""
        node = self.node(name)
        if family == 4:
            return node.IP(intf) if intf else node.IP()
        if family != 6:
            raise ConfigError(f"family must be 4 or 6, not {family!r}")
        for i in node.intfList():
            if (intf is None or str(i) == str(intf)) and i.params.get("addrs6"):
                return str(ipaddress.IPv6Interface(i.params["addrs6"][0]).ip)
        raise ConfigError(f"{name} has no IPv6 address" + (f" on {intf}" if intf else ""))

    def ip6(self, name, intf=None):
        """``name``'s IPv6 address: :meth:`ip` with ``family=6``."""
        return self.ip(name, intf, family=6)

    # -- doing things ----------------------------------------------------------
    def run(self, node, argv, timeout, check=True, input=None):
        node = self.resolve(node)
        return _run(node, argv, timeout, check=check, input=input)

    def start(self, node, argv, name=None, **popen_kwargs):
        """Start a long-running process in ``node``; it is stopped at teardown."""
        node = self.resolve(node)
        popen = _popen(node, argv, **popen_kwargs)
        proc = Process(node, argv, popen, name or os.path.basename(str(argv[0])))
        self._processes.append(proc)
        self.ledger.add_pid(proc.pid)
        return proc

    def apply_netem(self, node, intf, spec):
        """netem ``spec`` as the root qdisc of ``node``'s ``intf`` (its EGRESS).

        ``node``: a name or a node; ``spec``: a :class:`~wirelab.impair.spec.NetemSpec`,
        its keywords (a mapping) or its text. netem on r1-eth0 delays what r1
        sends toward r2, not what it receives. Refuses a second netem on the
        interface and a root qdisc someone else installed; turns offloads off;
        checks the kernel holds exactly ``spec``. Returns a live
        :class:`~wirelab.impair.qdisc.NetemHandle`, removed at teardown at the latest.
        """
        return self.impairments.apply_netem(node, intf, spec)

    def install_fault(self, node, fault, backend="auto"):
        """Put a :class:`~wirelab.impair.faults.Fault` into ``node``'s namespace.

        ``backend``: 'nft', 'xtables', or 'auto' (nft where nf_tables has the
        inet family, else xtables; probed once per node). Returns a live
        :class:`~wirelab.impair.impairments.FaultHandle`, removed at teardown at the latest.
        """
        return self.impairments.install_fault(node, fault, backend)

    def add_cleanup(self, description, fn):
        """Register ``fn`` to undo something just created.
        Cleanups run in reverse order at teardown, after the impairments are
        removed and before nodes are stopped."""
        self._cleanups.append((description, fn))

    def iproute(self, node):
        node = self.resolve(node)
        return iproute(node)

    # -- kernel state through netlink --------------------------------------------
    def routes(self, node, table=254, family=4):
        """The node's IPv4 (``family=6``: IPv6) routes in ``table`` (main) as plain
        dicts. IPv6 routes also carry ``priority`` (the metric: 256 for the
        kernel's connected routes, 1024 for ours)."""
        node = self.resolve(node)
        out = []
        if family not in (4, 6):
            raise ConfigError(f"family must be 4 or 6, not {family!r}")
        with iproute(node) as ipr:
            names = {l["index"]: l.get_attr("IFLA_IFNAME") for l in ipr.get_links()}
            for r in ipr.get_routes(family=2 if family == 4 else 10, table=table):
                if r.get_attr("RTA_TABLE", r["table"]) != table:
                    continue
                dst = r.get_attr("RTA_DST") or ("0.0.0.0" if family == 4 else "::")
                if family == 6:
                    out.append({
                        "dst": str(ipaddress.ip_network(f"{dst}/{r['dst_len']}")),
                        "gateway": r.get_attr("RTA_GATEWAY"),
                        "dev": names.get(r.get_attr("RTA_OIF")),
                        "prefsrc": r.get_attr("RTA_PREFSRC"),
                        "priority": r.get_attr("RTA_PRIORITY"),
                        "scope": r["scope"],
                        "proto": r["proto"],
                        "type": r["type"],
                    })
                    continue
                out.append({
                    "dst": str(ipaddress.ip_network(f"{dst}/{r['dst_len']}")),
                    "gateway": r.get_attr("RTA_GATEWAY"),
                    "dev": names.get(r.get_attr("RTA_OIF")),
                    "prefsrc": r.get_attr("RTA_PREFSRC"),
                    "scope": r["scope"],
                    "proto": r["proto"],
                    "type": r["type"],
                })
        return out

    def route_get(self, node, dst, ipr=None):
        """The kernel's forwarding decision for ``dst`` (RTM_GETROUTE), IPv4 or IPv6."""
        node = self.resolve(node)
        own = ipr is None
        ipr = ipr or iproute(node)
        v6 = {"family": 10} if ipaddress.ip_address(dst).version == 6 else {}
        try:
            r = ipr.route("get", dst=str(dst), **v6)[0]
            return {"gateway": r.get_attr("RTA_GATEWAY"), "oif": r.get_attr("RTA_OIF"),
                    "prefsrc": r.get_attr("RTA_PREFSRC"), "type": r["type"]}
        finally:
            if own:
                ipr.close()
