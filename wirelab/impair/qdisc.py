"""A netem qdisc on one interface's egress, as a handle: apply, change, read
back, count, remove.

::

    h1 ---- r1-eth0 [netem] ~~~~~~~~~~> r2-eth0 ---- h2
            netem on r1-eth0 delays/drops what r1 SENDS toward r2 (egress);
            what r2 sends back to r1 is untouched unless r2-eth0 gets one too.

A :class:`NetemHandle` is made by :meth:`Testbed.apply_netem
<wirelab.net.testbed.Testbed.apply_netem>`, which owns it and removes it at
teardown if it is still live. Everything goes through netlink, in the node's
own namespace, with :class:`~wirelab.impair.netlink.NetemTcMsg`.

* **Egress only.** netem is a queueing discipline; it acts on packets the node
  sends out of that interface.
* **Rate uses netem's own rate** (TCA_NETEM_RATE / RATE64), not a TBF or HTB:
  one qdisc, one set of counters, and the departure time of each packet already
  includes its serialisation time, so delay and rate compose the way a real link
  does. The price: netem's ``limit`` is then both the delay line and the
  bottleneck buffer (see :mod:`wirelab.impair.spec`).
* **Read back.** After every add or change the options the kernel holds are
  decoded and compared with the spec; a difference is an error.
* **Only ours.** A root qdisc someone else installed is never replaced, and
  only a qdisc this handle added is ever deleted.
"""

import errno
import os

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELQDISC, RTM_GETQDISC, RTM_NEWQDISC, TC_H_ROOT

from wirelab.errors import ConfigError, PreflightError, WirelabError
from wirelab.impair.netlink import NetemTcMsg, decode_options
from wirelab.net.kernel import has_sch_netem
from wirelab.net.netns import get_offloads, iproute, open_ioctl_socket, set_offloads

#: What :meth:`NetemHandle.counters` reports, from the qdisc's TCA_STATS2.
#: netem exports no per-cause counters (duplicated, corrupted, reordered are not
#: counted by the kernel): compare ``packets`` with what was sent instead.
COUNTERS = ("packets", "bytes", "drops", "overlimits", "requeues", "backlog_bytes", "qlen")


class NetemUnavailableError(PreflightError):
    """The kernel cannot create a netem qdisc (no sch_netem)."""


def require_netem():
    """Raise :class:`NetemUnavailableError` unless the running kernel has sch_netem."""
    if not has_sch_netem():
        raise NetemUnavailableError(
            f"kernel has no sch_netem ({os.uname().release}): run the netem work inside "
            "User-Mode Linux (tools/uml_run.py -- ...)")


# ------------------------------------------------------------- interfaces

def interface_name(node, intf):
    """``intf`` (a name or a Mininet Intf) checked to be one of ``node``'s."""
    name = intf if isinstance(intf, str) else intf.name
    if name not in node.intfNames():
        raise ConfigError(f"{node.name} has no interface {name!r} "
                          f"(it has {', '.join(n for n in node.intfNames() if n != 'lo')})")
    return name


def peer_of(node, ifname):
    """Name of the node at the other end of ``ifname``'s link, or '?'."""
    intf = node.intf(ifname)
    link = getattr(intf, "link", None)
    if link is None:
        return "?"
    other = link.intf2 if link.intf1 is intf else link.intf1
    return other.node.name


# ------------------------------------------------------------------ netlink

def _open(node):
    ipr = iproute(node)
    # Decode this socket's qdisc messages with our class (the map is per socket).
    ipr.marshal.msg_map[RTM_NEWQDISC] = NetemTcMsg
    return ipr


def _ifindex(ipr, node, ifname):
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise ConfigError(f"{node.name}: interface {ifname} does not exist in its namespace")
    return found[0]


def _root(ipr, index):
    query = NetemTcMsg()
    query["index"] = index
    for q in ipr.nlm_request(query, RTM_GETQDISC):
        if q["index"] == index and q["parent"] == TC_H_ROOT:
            return q
    return None


def _tcmsg(index, spec=None):
    msg = NetemTcMsg()
    msg["index"] = index
    msg["handle"] = 0
    msg["parent"] = TC_H_ROOT
    if spec is not None:
        msg["attrs"] = [["TCA_KIND", "netem"], ["TCA_OPTIONS", spec.netlink_options()]]
    return msg


def _netem_error(exc, node, ifname, action):
    if isinstance(exc, NetlinkError) and exc.code == errno.ENOENT and action == "add":
        return NetemUnavailableError(
            f"kernel has no sch_netem: cannot add netem on {node.name}:{ifname} "
            f"(run inside User-Mode Linux: tools/uml_run.py -- ...)")
    return WirelabError(f"netem {action} on {node.name}:{ifname} failed: {exc}")


def _describe_root(q):
    """A root qdisc message -> kind, handle, counters and (netem) decoded options."""
    if q is None:
        return {"kind": None}
    kind = q.get_attr("TCA_KIND")
    out = {"kind": kind, "handle": f"{q['handle'] >> 16:x}:"}
    stats2 = q.get_attr("TCA_STATS2")
    basic = stats2.get_attr("TCA_STATS_BASIC") if stats2 else None
    queue = stats2.get_attr("TCA_STATS_QUEUE") if stats2 else None
    if basic is None or queue is None:  # old kernels: only struct tc_stats
        s = q.get_attr("TCA_STATS") or {}
        basic = {"bytes": s.get("bytes", 0), "packets": s.get("packets", 0)}
        queue = {"drops": s.get("drop", 0), "overlimits": s.get("overlimits", 0),
                 "requeues": 0, "backlog": s.get("backlog", 0), "qlen": s.get("qlen", 0)}
    out.update(packets=basic["packets"], bytes=basic["bytes"], drops=queue["drops"],
               overlimits=queue["overlimits"], requeues=queue["requeues"],
               backlog_bytes=queue["backlog"], qlen=queue["qlen"])
    if kind == "netem":
        out["options"] = decode_options(q.get_attr("TCA_OPTIONS"))
    return out


def root_qdisc(node, intf):
    """The root qdisc of ``node``'s ``intf`` as the kernel reports it, over netlink.

    Any qdisc, ours or not. Keys: ``kind`` (None: no root qdisc), ``handle``,
    the :data:`COUNTERS`, and for netem ``options`` (decoded into the spec's
    vocabulary and units)."""
    ifname = interface_name(node, intf)
    with _open(node) as ipr:
        return _describe_root(_root(ipr, _ifindex(ipr, node, ifname)))


def _offloads_off(node, ifname):
    """TSO/GSO/GRO off, verified: netem must see the packets that go on the wire."""
    with open_ioctl_socket(node) as sock:
        set_offloads(sock, ifname, enabled=False)
        state = get_offloads(sock, ifname)
    on = [k for k, v in state.items() if v]
    if on:
        raise WirelabError(f"{node.name}:{ifname}: could not turn off {', '.join(on)}")


# ------------------------------------------------------------------ the handle

class NetemHandle:
    """One netem qdisc this run installed: where, what, which way it acts.

    ``node`` (a Mininet node), ``intf`` (its interface name), ``peer`` (the node
    the impaired packets go to), ``spec``. Live until :meth:`remove` (or the
    Testbed's teardown); afterwards :meth:`counters` and :meth:`readback` give
    the values read just before the qdisc was deleted. Use ``with`` to remove it
    at the end of a block.
    """

    kind = "netem"

    def __init__(self, node, intf, spec, on_remove=None):
        self.node = node
        self.intf = interface_name(node, intf)
        self.peer = peer_of(node, self.intf)
        self.spec = spec
        self._on_remove = on_remove
        self._added = False     # set before the add: only then may remove() delete
        self._removed = False
        self._final = None      # _describe_root() just before the delete

    # -- lifecycle (install() is called by the owner, once)
    def install(self):
        """Offloads off, refuse a foreign root qdisc, add, read back and compare."""
        _offloads_off(self.node, self.intf)
        with _open(self.node) as ipr:
            index = _ifindex(ipr, self.node, self.intf)
            root = _root(ipr, index)
            if root is not None and root["handle"] != 0:
                raise ConfigError(
                    f"{self.where} already has a root qdisc {root.get_attr('TCA_KIND')} "
                    f"(handle {root['handle'] >> 16:x}:): netem would replace it")
            self._added = True
            try:
                ipr.nlm_request(_tcmsg(index, self.spec), RTM_NEWQDISC,
                                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            except NetlinkError as exc:
                raise _netem_error(exc, self.node, self.intf, "add") from exc
        self._verify()
        return self

    def change(self, spec):
        """Replace the running netem by ``spec`` without a gap; read back again.

        Counters keep counting. Exception: going from a distribution table to
        uniform re-creates the qdisc (counters restart), because netem keeps its
        old table when a change message has none and cannot be sent an empty one."""
        self._require_live("change")
        with _open(self.node) as ipr:
            index = _ifindex(ipr, self.node, self.intf)
            try:
                if self.spec.distribution != "uniform" and spec.distribution == "uniform":
                    ipr.nlm_request(_tcmsg(index), RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK)
                    ipr.nlm_request(_tcmsg(index, spec), RTM_NEWQDISC,
                                    NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
                else:
                    ipr.nlm_request(_tcmsg(index, spec), RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK)
            except NetlinkError as exc:
                raise _netem_error(exc, self.node, self.intf, "change") from exc
        self.spec = spec
        self._verify()
        return self

    def remove(self):
        """Delete the qdisc (the kernel's default returns) and deregister.

        Idempotent: True if this call removed it, False if it was already gone.
        A failed delete raises and leaves the handle live, so teardown retries."""
        if self._removed:
            return False
        if self._added:
            with _open(self.node) as ipr:
                index = _ifindex(ipr, self.node, self.intf)
                root = _root(ipr, index)
                if root is not None and root.get_attr("TCA_KIND") == "netem":
                    self._final = _describe_root(root)
                    try:
                        ipr.nlm_request(_tcmsg(index), RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK)
                    except NetlinkError as exc:
                        if exc.code not in (errno.ENOENT, errno.EINVAL):
                            raise _netem_error(exc, self.node, self.intf, "delete") from exc
        self._forget()
        return True

    def forget_gone(self):
        """Teardown, when the node's namespace is already gone (and the qdisc with it)."""
        self._forget()

    def _forget(self):
        self._removed = True
        if self._on_remove is not None:
            self._on_remove(self)

    @property
    def removed(self):
        return self._removed

    @property
    def where(self):
        return f"{self.node.name}:{self.intf}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    # -- reading the kernel
    def _root_now(self):
        return root_qdisc(self.node, self.intf)

    def _current(self):
        """The root qdisc while live, the last reading after removal."""
        if self._removed:
            if self._final is None:
                raise WirelabError(f"netem on {self.where} was removed before it could be read")
            return self._final
        root = self._root_now()
        if root["kind"] != "netem":
            raise WirelabError(f"{self.where}: root qdisc is {root['kind']}, not netem")
        return root

    def readback(self):
        """The options the kernel holds, in the spec's vocabulary and units."""
        return dict(self._current()["options"])

    def counters(self):
        """``packets``, ``bytes``, ``drops``, ``overlimits``, ``requeues``,
        ``backlog_bytes``, ``qlen`` of the qdisc (final values once removed)."""
        current = self._current()
        return {k: current[k] for k in COUNTERS}

    def _verify(self):
        bad = self.spec.mismatches(self.readback())
        if bad:
            key, want, got = bad[0]
            raise WirelabError(f"{self.where}: kernel holds {key}={got}, asked for {want}")

    def _require_live(self, action):
        if self._removed:
            raise ConfigError(f"netem on {self.where} was removed: cannot {action} it")

    # -- reporting
    def describe(self):
        """One line, saying which side the qdisc acts on."""
        return (f"netem on {self.intf} delays/drops packets {self.node.name} sends toward "
                f"{self.peer}: {self.spec}"
                + (" (jitter reorders packets)" if self.spec.jitter and self.spec.rate is None
                   else "")
                + (" [removed]" if self._removed else ""))

    def to_dict(self):
        """JSON-ready: the spec asked for, what the kernel read back, the counters."""
        try:
            current = self._current()
        except WirelabError:
            current = None
        readback = dict(current["options"]) if current else None
        if readback and readback.get("gemodel") is not None:
            readback["gemodel"] = list(readback["gemodel"])
        return {"kind": self.kind, "node": self.node.name, "intf": self.intf, "peer": self.peer,
                "spec": self.spec.to_dict(), "text": str(self.spec), "readback": readback,
                "counters": {k: current[k] for k in COUNTERS} if current else None,
                "removed": self._removed}

    def __repr__(self):
        return f"<NetemHandle {self.where} {self.spec}{' removed' if self._removed else ''}>"
