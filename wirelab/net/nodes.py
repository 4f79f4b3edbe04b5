"""Node classes: hosts, routers and LAN bridges configured through netlink.

A topology (``topologies/``) is data: it names these classes with ``cls=`` and
gives addresses per link end (``params1={'addrs': ['10.0.0.1/24']}``) and static
routes per node (``routes=[('10.2.0.0/16', '10.0.0.2'), ('default', '10.0.0.1')]``).
The nodes apply them themselves in ``config()``, so the same topology works from
``wirelab.net.testbed.Testbed`` and from ``sudo mn --custom ... --controller none``.

Every node, when configured, turns TSO/GSO/GRO off on its links and brings its
interfaces up; addresses and routes go through pyroute2 in the node's namespace,
never through ``ifconfig`` or ``ip`` text.

IPv6 beside IPv4: ``params1={'addrs6': ['fd77:1:a00::1/64']}`` per link end and
``routes6=[('fd77:1:a00:200::/55', 'fd77:1:a00:100::2'), ('default', ...)]``
per node. Duplicate address detection and router advertisements are off in
every node's namespace before its interfaces exist (:attr:`NetlinkNode.SYSCTLS`),
and addresses are added with IFA_F_NODAD: an address is usable the moment it is
added, and no link-local address sits "tentative" for a second (a router cannot
send neighbour solicitations for forwarded packets without a usable one).

Every node's shell must come up within :attr:`ShellDeadline.START_TIMEOUT_S`;
one that exits or stays silent fails the run with :class:`NodeStartError`
naming the node, the exit status and what the shell printed.
"""

import ipaddress
import os
import pty
import select
import signal
import subprocess
import time

from mininet.link import Intf, Link
from mininet.node import Host as MnHost
from mininet.node import Node
from mininet.nodelib import LinuxBridge

from pyroute2 import NetlinkError

from wirelab.errors import CommandError, ConfigError, WirelabError

_PROMPT = b"\x7f"   # Mininet's PS1: the sentinel that ends every command's output


class NodeStartError(WirelabError):
    """A node's shell did not come up: it exited, or printed no prompt in time."""

    exit_code = CommandError.exit_code   # a command (the node's shell) failed


def _one_line(output, limit=300):
    text = output.decode(errors="replace").replace("\x7f", "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines)[-limit:]


class ShellDeadline:
    """Mixin for Mininet nodes: start the node's shell with a deadline.

    Mininet's ``Node.startShell`` reads the shell's pty until the prompt with no
    timeout, and keeps the pty's other end open itself, so a shell that dies
    (``mnexec`` failing with "remount: Invalid argument") is never noticed: the
    run hangs with the shell a zombie. Here the prompt is awaited together with
    the shell's exit (a pidfd), under one deadline; on failure, or on an
    interrupt meanwhile, the shell is killed, reaped and its pty closed.
    """

    #: A shell starts in milliseconds; this covers a machine whose cores are all busy.
    START_TIMEOUT_S = 15.0

    def shell_argv(self, opts):
        """The command that starts the node's shell (as Mininet's startShell)."""
        return ["mnexec", opts, "env", "PS1=" + chr(127), "bash", "--norc",
                "--noediting", "-is", "mininet:" + self.name]

    def startShell(self, mnopts=None):
        if self.shell:
            raise NodeStartError(f"node {self.name}: shell is already running")
        opts = "-cd" if mnopts is None else mnopts
        if self.inNamespace:
            opts += "n"
        argv = self.shell_argv(opts)
        deadline = time.monotonic() + self.START_TIMEOUT_S
        self.master, self.slave = pty.openpty()
        try:
            self.shell = self._popen(argv, stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, close_fds=False)
        except OSError as exc:
            os.close(self.master)
            os.close(self.slave)
            self.master = self.slave = None
            raise NodeStartError(f"node {self.name}: cannot start {argv[0]}: {exc}") from None
        self.stdin = os.fdopen(self.master, "r")
        self.stdout = self.stdin
        self.pid = self.shell.pid
        self.pollOut = select.poll()
        self.pollOut.register(self.stdout)
        self.outToNode[self.stdout.fileno()] = self
        self.inToNode[self.stdin.fileno()] = self
        self.execed = False
        self.lastCmd = None
        self.lastPid = None
        self.readbuf = ""
        try:
            self._await_prompt(deadline, "print its prompt")
            # What Mininet's startShell sends next, awaited under the same deadline.
            self.write("unset HISTFILE; stty -echo; set +m\n")
            self._await_prompt(deadline, "answer its first command")
        except BaseException:   # also KeyboardInterrupt: never leave the shell behind
            self._abandon_shell()
            raise
        self.waiting = False

    def _await_prompt(self, deadline, what):
        """Read the pty until the prompt; raise if the shell exits or time runs out."""
        fd = self.stdout.fileno()
        pidfd = os.pidfd_open(self.shell.pid)
        output = b""
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.register(pidfd, select.POLLIN)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NodeStartError(
                        f"node {self.name}: shell (pid {self.shell.pid}) did not {what} within "
                        f"{self.START_TIMEOUT_S:g}s" + (f": {_one_line(output)}" if output else ""))
                events = dict(poller.poll(max(1, int(remaining * 1000))))
                if events.get(fd, 0) & select.POLLIN:
                    chunk = os.read(fd, 4096)
                    output += chunk
                    if _PROMPT in chunk:
                        return output
                    if chunk:
                        continue   # read all it printed before looking at its exit
                if pidfd in events:
                    code = self.shell.wait(max(0.1, deadline - time.monotonic()))
                    raise NodeStartError(
                        f"node {self.name}: shell exited {code} before it could {what}"
                        + (f": {_one_line(output)}" if output else " (no output)"))
        finally:
            os.close(pidfd)

    def _abandon_shell(self):
        """Kill the half-started shell (its session: mnexec -d made it a leader),
        reap it and close both ends of its pty."""
        shell = self.shell
        for kill in (lambda: os.killpg(shell.pid, signal.SIGKILL),
                     lambda: os.kill(shell.pid, signal.SIGKILL)):
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        try:
            shell.wait(5)
        except subprocess.TimeoutExpired:
            pass   # in D state: the run's reaper (label WIRELAB_RUN) waits for it
        self.outToNode.pop(self.stdout.fileno(), None)
        self.inToNode.pop(self.stdin.fileno(), None)
        self.stdin.close()
        os.close(self.slave)
        self.shell = None


class MininetHost(ShellDeadline, MnHost):
    """Mininet's plain Host, with the shell start-up deadline (Testbed's default)."""
from wirelab.net.netns import (add_routes, entered, iproute, node_sockets, open_ioctl_socket,
                               set_offloads)


AF_INET6 = 10
IFA_F_NODAD = 0x02      # linux/if_addr.h: no duplicate address detection


def _route_spec(route, family=4):
    """Normalise ``(dst, via)`` or a dict into pyroute2 keywords."""
    if isinstance(route, dict):
        dst, via, dev = route.get("dst"), route.get("via"), route.get("dev")
    else:
        dst, via = route[0], route[1]
        dev = route[2] if len(route) > 2 else None
    if dst in ("default", "0.0.0.0/0", "::/0"):
        dst = "0.0.0.0/0" if family == 4 else "::/0"
    net = ipaddress.ip_network(dst, strict=True)
    spec = {"dst": str(net.network_address), "dst_len": net.prefixlen}
    if net.version == 6:
        spec["family"] = AF_INET6
    if via:
        spec["gateway"] = str(ipaddress.ip_address(via))
    if dev:
        spec["dev"] = dev
    return spec


class NetlinkNode(ShellDeadline, Node):
    """A namespaced node whose interfaces, addresses and routes come from params.

    ``SYSCTLS`` ({key under /proc/sys: value}) are set in the node's own network
    namespace as soon as its shell is up, before any of its interfaces exists
    (so an interface takes the namespace's IPv6 ``default`` settings when it is
    created); the old values are recorded and restored when it terminates (it
    matters when a namespace outlives the node, as with ``mn``'s CLI, and it
    documents exactly what each kind of node changes).
    """

    SYSCTLS = {
        # DAD would hold every IPv6 address "tentative" for a second after its
        # link comes up (dad_transmits x retrans_time): unusable, and a router
        # without a usable link-local address sends no neighbour solicitation.
        # The emulation assigns every address from one plan: nothing to detect.
        # The kernel does DAD unless both all/ and the interface say 0.
        "net/ipv6/conf/all/accept_dad": "0",
        "net/ipv6/conf/default/accept_dad": "0",
        # No router advertisements are sent here, and a host that accepts them
        # also solicits them (RS after its link-local address, again and
        # again): every address and route comes from the plan instead.
        "net/ipv6/conf/all/accept_ra": "0",
        "net/ipv6/conf/default/accept_ra": "0",
    }

    def __init__(self, name, **params):
        self.wl_saved_sysctls = {}
        super().__init__(name, **params)
        try:
            self.wl_saved_sysctls.update(self._sysctls(self.SYSCTLS))
        except BaseException:   # no half-configured node left behind with its shell
            self._abandon_shell()
            raise

    def config(self, routes=(), routes6=(), lo="up", **_params):
        return self._config_links(routes, routes6, lo)

    def _sysctl(self, key, value=None):
        """Read (and optionally write) a sysctl in this node's namespace."""
        return self._sysctls({key: value})[key]

    def _sysctls(self, values):
        """Read, and write where the value is not None, several sysctls of this
        node's namespace (entered once for all); returns {key: old value}.
        Stops at the first that fails, with those before it written."""
        keys = list(values)
        fds = []
        try:
            with entered(self):
                for key in keys:
                    fds.append(os.open(f"/proc/sys/{key}",
                                       os.O_RDWR if values[key] is not None else os.O_RDONLY))
            old = {}
            for key, fd in zip(keys, fds):
                old[key] = os.read(fd, 64).decode().strip()
                if values[key] is not None:
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.write(fd, values[key].encode())
            return old
        finally:
            for fd in fds:
                os.close(fd)

    def sysctl(self, key):
        return self._sysctl(key)

    def terminate(self):
        for key, old in getattr(self, "wl_saved_sysctls", {}).items():
            try:
                self._sysctl(key, old)
            except OSError:
                pass  # the namespace is already gone: nothing left to restore
        super().terminate()

    def _config_links(self, routes, routes6, lo):
        # Deliberately not Node.config(): that sets the auto-assigned 10.x/8
        # address with ifconfig. Ours come from the topology's address plan.
        self.wl_routes = [_route_spec(r) for r in routes]
        self.wl_routes6 = [_route_spec(r, family=6) for r in routes6]
        with node_sockets(self) as (ipr, sock, rtnl):
            # One dump of the links, not a lookup per interface name.
            index = {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
            if lo == "up":
                ipr.link("set", index=index["lo"], state="up")
            for intf in self.intfList():
                if intf.name == "lo":
                    continue
                set_offloads(sock, intf.name, enabled=False)
                for cidr in intf.params.get("addrs", ()):
                    iface = ipaddress.ip_interface(cidr)
                    ipr.addr("add", index=index[intf.name],
                             address=str(iface.ip), prefixlen=iface.network.prefixlen)
                    if intf.ip is None or intf.ip == "":
                        # Mininet's CLI (h1 ping h2) and IP() read these.
                        intf.ip, intf.prefixLen = str(iface.ip), iface.network.prefixlen
                for cidr in intf.params.get("addrs6", ()):
                    iface = ipaddress.IPv6Interface(cidr)
                    ipr.addr("add", index=index[intf.name], family=AF_INET6,
                             address=str(iface.ip), prefixlen=iface.network.prefixlen,
                             flags=IFA_F_NODAD)
                # Up here, not by Mininet (NetlinkIntf skips its ifconfig up).
                ipr.link("set", index=index[intf.name], state="up")
            specs = []
            for spec in self.wl_routes + self.wl_routes6:
                spec = dict(spec)
                if "dev" in spec:
                    spec["oif"] = index[spec.pop("dev")]
                specs.append(spec)
            # Hundreds of routes per router in a large backbone: sent in batches.
            failed = add_routes(rtnl, specs)
            if failed:
                spec, errno = failed[0]
                more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
                raise ConfigError(f"{self.name}: cannot add route {spec}: "
                                  f"{NetlinkError(errno)}{more}")
        return {}



class Host(NetlinkNode):
    """An end host: addresses and routes from the topology, no forwarding."""


class LinuxRouter(NetlinkNode):
    """A router: a host that forwards. IPv4 and IPv6 forwarding on, plus the
    ICMP settings below; every sysctl changed is recorded and restored."""

    SYSCTLS = {
        **NetlinkNode.SYSCTLS,
        "net/ipv4/ip_forward": "1",
        # all/ sets every interface's and the default's forwarding too.
        "net/ipv6/conf/all/forwarding": "1",
        # ICMPv6 errors are rate-limited per destination as well (1000 ms,
        # shorter for shorter routes, a burst of 6): traceroute -6 needs them all.
        "net/ipv6/icmp/ratelimit": "0",
        # ICMP errors (traceroute's time-exceeded) leave from the interface the
        # probe came in on, so each hop names the interface on the path.
        "net/ipv4/icmp_errors_use_inbound_ifaddr": "1",
        # Linux rate-limits ICMP errors per destination (6 back to back, then one
        # a second). Traceroute's probes arrive in bursts in an emulation with
        # microsecond links, so without this late hops show as '*'.
        "net/ipv4/icmp_ratelimit": "0",
    }


class LanBridge(ShellDeadline, LinuxBridge):
    """A LAN: a Linux bridge inside its own namespace, driven through netlink.

    Living in a namespace, it leaves nothing in the root namespace if the run is
    killed; and it needs no brctl.
    """

    def __init__(self, name, **params):
        # Always: mn passes inNamespace=False to every switch, and a bridge in
        # the root namespace would collide with the next one (all are br0).
        params["inNamespace"] = True
        super().__init__(name, **params)

    @classmethod
    def setup(cls):
        """LinuxBridge.setup() insists on brctl; we use netlink instead."""

    def defaultDpid(self, dpid=None):
        return dpid or "0" * 16

    def connected(self):
        return True

    def start(self, _controllers):
        with iproute(self) as ipr, open_ioctl_socket(self) as sock:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            # STP off (the default): ports forward as soon as they are up.
            ipr.link("add", ifname="br0", kind="bridge")
            br = ipr.link_lookup(ifname="br0")[0]
            for intf in self.intfList():
                if intf.name == "lo":
                    continue
                set_offloads(sock, intf.name, enabled=False)
                idx = ipr.link_lookup(ifname=intf.name)[0]
                ipr.link("set", index=idx, master=br, state="up")
            ipr.link("set", index=br, state="up")

    def stop(self, deleteIntfs=True):
        try:
            with iproute(self) as ipr:
                for idx in ipr.link_lookup(ifname="br0"):
                    ipr.link("del", index=idx)
        except OSError:
            pass
        super(LinuxBridge, self).stop(deleteIntfs)


class NetlinkIntf(Intf):
    """Mininet's Intf, minus its ``ifconfig <intf> up`` (a shell round trip per
    interface) where the node brings the interface up itself through netlink
    (a :class:`NetlinkNode` in ``config()``, a :class:`LanBridge` in ``start()``)
    and nothing else (MAC, IP, ifconfig arguments) is asked of Mininet."""

    def config(self, mac=None, ip=None, ifconfig=None, up=True, **params):
        if (isinstance(self.node, (NetlinkNode, LanBridge))
                and mac is None and ip is None and ifconfig is None):
            return {}
        return super().config(mac=mac, ip=ip, ifconfig=ifconfig, up=up, **params)


class NetlinkLink(Link):
    """Mininet's Link with :class:`NetlinkIntf` ends (the Testbed's link class)."""

    def __init__(self, node1, node2, **params):
        params.setdefault("intf", NetlinkIntf)
        super().__init__(node1, node2, **params)
