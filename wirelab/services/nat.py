"""The home router's NAT: an nftables table of the run, and the kernel's conntrack table.

    nat = Masquerade(tb, "hgw", outside="hgw-eth0", inside="hgw-eth1",
                     inside_net="192.168.1.0/24").apply()     # removed at teardown
    entries = read_conntrack(tb["hgw"])                         # netlink, in hgw's namespace

:func:`nat_ruleset` is what a home router does, in one table named
``wirelab_nat_<run id>`` (never ``nat``: a table of that name may be someone
else's), family ``ip``:

* ``postrouting`` (type nat, priority srcnat): a packet from the home LAN
  leaving by the WAN interface is masqueraded: its source becomes the WAN
  interface's address, whatever DHCP gave, and conntrack picks the source
  port (the same one unless another connection already holds it);
* ``forward`` (type filter): from the WAN into the LAN only what belongs to a
  connection the home opened (``ct state established,related``); the rest is
  counted and dropped, as a home router's firewall does.

Two named counters (``masqueraded``: the first packet of each connection the
nat chain sees; ``inbound_dropped``) are read back as JSON (``nft -j``). The
table is written with ``nft -f -`` and checked, by name, to be gone after
removal.

:func:`read_conntrack` dumps the connection tracking table through netlink
(pyroute2 ``NFCTSocket``, ``IPCTNL_MSG_CT_GET`` with NLM_F_DUMP) on a socket
opened inside the node's namespace: each entry's original tuple (as the home
host sent it) and reply tuple (as the far end answers it: its destination is
the public address and port the NAT chose), status bits and TCP state.
"""

import ipaddress
import json

from wirelab.errors import CommandError, WirelabError
from wirelab.impair import nft
from wirelab.proc import run

_TIMEOUT = 10
# linux/netfilter/nf_conntrack_common.h, enum ip_conntrack_status
IPS_SEEN_REPLY, IPS_ASSURED, IPS_CONFIRMED = 1 << 1, 1 << 2, 1 << 3
IPS_SRC_NAT, IPS_DST_NAT = 1 << 4, 1 << 5
# linux/netfilter/nf_conntrack_tcp.h, enum tcp_conntrack
TCP_STATES = ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
              "TIME_WAIT", "CLOSE", "SYN_SENT2"]
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp"}


class NatError(WirelabError):
    """The NAT table could not be written, read or removed."""

    exit_code = 6


def table_name(run_id):
    return f"wirelab_nat_{run_id}"


def _quote(name):
    return '"' + name.replace('"', "") + '"'


def nat_ruleset(table, outside, inside, inside_net):
    """The ``nft -f`` text of the run's NAT table (see the module docstring)."""
    net = ipaddress.IPv4Network(inside_net)
    o, i = _quote(outside), _quote(inside)
    return "\n".join([
        f"table ip {table} {{",
        "  counter masqueraded { }",
        "  counter inbound_dropped { }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f'    oifname {o} ip saddr {net} counter name "masqueraded" masquerade',
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        f"    iifname {o} oifname {i} ct state established,related accept",
        f'    iifname {o} oifname {i} counter name "inbound_dropped" drop',
        "  }",
        "}", ""])


def ruleset_summary(nft_json, table):
    """From ``nft -j list table``: the rules of each chain as plain expressions,
    enough to compare with what was written (hook, priority, statements)."""
    chains, rules = {}, {}
    for item in nft_json.get("nftables", []):
        if "chain" in item and item["chain"].get("table") == table:
            c = item["chain"]
            chains[c["name"]] = {"type": c.get("type"), "hook": c.get("hook"), "prio": c.get("prio"),
                                 "policy": c.get("policy")}
        if "rule" in item and item["rule"].get("table") == table:
            r = item["rule"]
            rules.setdefault(r["chain"], []).append([next(iter(e)) for e in r["expr"]])
    return {"chains": chains, "rules": rules}


class Masquerade:
    """The run's NAT table on ``router``: :meth:`apply` writes it, :meth:`remove`
    (registered with the Testbed) deletes it and checks it is gone."""

    def __init__(self, tb, router, outside, inside, inside_net):
        self.tb, self.node = tb, tb.resolve(router)
        self.outside, self.inside, self.inside_net = outside, inside, str(ipaddress.IPv4Network(inside_net))
        self.table = table_name(tb.run_id)
        self.text = nat_ruleset(self.table, outside, inside, self.inside_net)
        self.readback = None
        self.applied = False
        self.removed = None      # after remove(): {"deleted": bool, "tables_after": [...]}
        self.final_counters = None

    def _nft(self, args, input=None, check=True):
        return run(self.node, ["nft", *args], timeout=_TIMEOUT, input=input, check=check)

    def apply(self):
        try:
            self._nft(["-f", "-"], input=self.text)
        except CommandError as exc:
            raise NatError(f"nat: cannot write table ip {self.table} on {self.node.name}: "
                           f"{nft.first_line(exc)}") from None
        self.applied = True
        self.tb.add_cleanup(f"nat: delete table ip {self.table} on {self.node.name}", self.remove)
        self.readback = ruleset_summary(self.list_table(), self.table)
        return self

    def list_table(self):
        return json.loads(self._nft(["-j", "list", "table", "ip", self.table]).stdout)

    def counters(self):
        """{counter name: {"packets", "bytes"}} read back from the kernel."""
        done = self._nft(["-j", "list", "counters", "table", "ip", self.table])
        out = {}
        for item in json.loads(done.stdout).get("nftables", []):
            c = item.get("counter")
            if c and c.get("table") == self.table:
                out[c["name"]] = {"packets": c["packets"], "bytes": c["bytes"]}
        return out

    def tables(self):
        """Every table in the node's namespace, as (family, name)."""
        done = self._nft(["-j", "list", "tables"])
        return [(t["table"]["family"], t["table"]["name"])
                for t in json.loads(done.stdout).get("nftables", []) if "table" in t]

    def remove(self):
        if not self.applied or self.removed is not None:
            return
        try:
            self.final_counters = self.counters()
        except CommandError:
            self.final_counters = None
        done = self._nft(["delete", "table", "ip", self.table], check=False)
        after = self.tables()
        self.removed = {"deleted": done.returncode == 0, "tables_after": [list(t) for t in after]}
        if ("ip", self.table) in after:
            raise NatError(f"nat: table ip {self.table} still on {self.node.name}: {done.stderr.strip()}")

    def to_dict(self):
        return {"node": self.node.name, "table": self.table, "outside": self.outside, "inside": self.inside,
                "inside_net": self.inside_net, "ruleset": self.text, "readback": self.readback,
                "removed": self.removed, "final_counters": self.final_counters}


# -- conntrack through netlink --------------------------------------------------------

def _tuple(nla):
    """(proto, src, sport, dst, dport) of a CTA_TUPLE_* attribute (ports None for ICMP)."""
    ip, proto = nla.get_attr("CTA_TUPLE_IP"), nla.get_attr("CTA_TUPLE_PROTO")
    return {"proto": PROTO_NAMES.get(proto.get_attr("CTA_PROTO_NUM"), proto.get_attr("CTA_PROTO_NUM")),
            "src": ip.get_attr("CTA_IP_V4_SRC"), "dst": ip.get_attr("CTA_IP_V4_DST"),
            "sport": proto.get_attr("CTA_PROTO_SRC_PORT"), "dport": proto.get_attr("CTA_PROTO_DST_PORT")}


def conntrack_entry(msg):
    """One NFCTSocket message as a plain dict."""
    status = msg.get_attr("CTA_STATUS") or 0
    entry = {"id": msg.get_attr("CTA_ID"), "orig": _tuple(msg.get_attr("CTA_TUPLE_ORIG")),
             "reply": _tuple(msg.get_attr("CTA_TUPLE_REPLY")), "status": status,
             "src_nat": bool(status & IPS_SRC_NAT), "seen_reply": bool(status & IPS_SEEN_REPLY),
             "assured": bool(status & IPS_ASSURED), "timeout": msg.get_attr("CTA_TIMEOUT"),
             "tcp_state": None}
    info = msg.get_attr("CTA_PROTOINFO")
    tcp = info.get_attr("CTA_PROTOINFO_TCP") if info is not None else None
    if tcp is not None:
        state = tcp.get_attr("CTA_PROTOINFO_TCP_STATE")
        entry["tcp_state"] = TCP_STATES[state] if state is not None and state < len(TCP_STATES) else state
    return entry


def read_conntrack(node):
    """The IPv4 conntrack table of ``node``'s namespace (netlink dump), as dicts."""
    from pyroute2 import NFCTSocket
    from wirelab.net.netns import entered
    with entered(node):
        sock = NFCTSocket()
    try:
        return [conntrack_entry(m) for m in sock.dump() if m.get_attr("CTA_TUPLE_ORIG") is not None]
    finally:
        sock.close()
