"""Message sequence charts of ``internet_services``, one per step, from the folder only.

Each chart's arrows are packets read from the case's captures (DHCP messages
decoded by :mod:`wirelab.services.dhcp_wire`, TCP/ICMP by the house's IPv4
reader); notes come from the case's records. A chart whose evidence is
missing is skipped (verify has already said why).
"""

from wirelab.experiment.services_claims import DORA, NO_SERVER, _messages
from wirelab.observe.ipfrag import read_ip_packets
from wirelab.observe.pcap.tcpflags import ACK, RST, SYN
from wirelab.services.msc import Arrow, draw

COLORS = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]


def _nodes_by_mac(ev):
    return {mac.lower(): node for node, mac in ev.run["network"]["macs"].items()}


def _dhcp_label(m):
    if m.kind in ("OFFER", "ACK"):
        extra = f" {m.yiaddr}"
        if m.kind == "ACK" and m.t1_s is not None:
            extra += f" T1={m.t1_s}s dns={','.join(m.dns)}"
        return m.kind + extra
    if m.kind == "REQUEST":
        return "REQUEST (renew, unicast)" if m.ciaddr != "0.0.0.0" and not m.broadcast else \
            f"REQUEST {m.requested_ip}"
    return m.kind + (" (broadcast)" if m.broadcast else "")


def chart_no_server(ev):
    host = ev.case(NO_SERVER)["args"]["host"]
    arrows = [Arrow(m.t, host, None, f"{_dhcp_label(m)} xid={m.xid:#x}: no answer", "C3", dashed=True)
              for m in _messages(ev, NO_SERVER, "lan.pcap")]
    w = ev.case(NO_SERVER)["workload"]
    if arrows:
        arrows.append(Arrow(arrows[-1].t + 1.0, host, host, f"dhclient exits {w['exit_code']}: "
                                                            f"{w['last_line']}", "C3"))
    draw([host, "hgw"], arrows, ev.path(NO_SERVER, "dhcp-no-server.png"),
         f"DHCP with no server: {host} broadcasts DISCOVERs, nobody offers")


def _dhcp_arrows(ev, case, name, server):
    by_mac, arrows = _nodes_by_mac(ev), []
    for m in _messages(ev, case, name):
        client = by_mac.get(m.chaddr)
        if client is None:
            continue
        color = COLORS[sorted(by_mac.values()).index(client) % len(COLORS)]
        src, dst = (client, server) if m.op == 1 else (server, client)
        arrows.append(Arrow(m.t, src, dst, _dhcp_label(m), color, dashed=m.op == 1 and m.ciaddr != "0.0.0.0"))
    return arrows


def chart_dora(ev):
    hosts = ev.run["network"]["home_hosts"]
    arrows = _dhcp_arrows(ev, DORA, "access.pcap", "isp") + _dhcp_arrows(ev, DORA, "lan.pcap", "hgw")
    draw(["isp", "hgw", *hosts], arrows, ev.path(DORA, "dhcp-dora.png"),
         "DHCP: the ISP leases hgw its WAN address, hgw leases the home; renewals at T1 (dashed)",
         lane_labels={"isp": "isp (DHCP server)", "hgw": "hgw (client, then server)"})


def chart_resolver(ev):
    hosts = ev.run["network"]["home_hosts"]
    resolver = ev.run["network"]["resolver_ip"]
    clients = ev.case(DORA)["workload"]["clients"]
    arrows, told = [], set()
    for a in sorted(_dhcp_arrows(ev, DORA, "access.pcap", "isp") + _dhcp_arrows(ev, DORA, "lan.pcap", "hgw"),
                    key=lambda a: a.t):
        if a.label.startswith("ACK") and a.src in ("isp", "hgw") and a.dst not in told:   # each DORA's ACK
            told.add(a.dst)
            arrows.append(Arrow(a.t, a.src, a.dst, f"ACK: DNS server {a.label.split(' dns=')[-1]}", a.color))
    for node in ["hgw", *hosts]:
        bound = clients[node]["bound"]
        arrows.append(Arrow(bound["t"], node, node, f"its resolv.conf: nameserver {bound['dns']}", "C2"))
    seen = ev.case("resolver")["workload"]["hosts"]
    t_end = max((a.t for a in arrows), default=0.0) + 0.001
    for h in hosts:
        ns = (seen[h].get("seen") or {}).get("nameservers")
        arrows.append(Arrow(t_end, h, h, f"/etc/resolv.conf in its namespace: {ns}", "C4"))
    draw(["isp", "hgw", *hosts], arrows, ev.path("resolver", "resolver.png"),
         f"The resolver's address ({resolver}) travels by DHCP: ISP -> home router -> home hosts")


def _first_syns(packets):
    seen, out = set(), []
    for p in packets:
        if p.proto == 6 and p.tcp_flags is not None and p.tcp_flags & (SYN | ACK) == SYN:
            key = (p.src, p.sport, p.dst, p.dport)
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def chart_nat_outbound(ev):
    case = "nat/outbound"
    hosts, svc = ev.run["network"]["home_hosts"], ev.run["network"]["service"]
    w = ev.case(case)["workload"]
    lane_of = {p["local_ip"]: p["host"] for p in w["programs"] if p.get("local_ip")}
    arrows = []
    for p in _first_syns(read_ip_packets(ev.path(case, "lan.pcap"))):
        if p.src in lane_of:
            host = lane_of[p.src]
            arrows.append(Arrow(p.ts_ns / 1e9, host, "hgw", f"SYN {p.src}:{p.sport} -> :{p.dport}",
                                COLORS[hosts.index(host) % len(COLORS)]))
    for p in _first_syns(read_ip_packets(ev.path(case, "wan.pcap"))):
        if p.dst == svc["ip"]:
            arrows.append(Arrow(p.ts_ns / 1e9, "hgw", "srv1", f"SYN {p.src}:{p.sport} -> {p.dst}:{p.dport}", "C7"))
    draw([*hosts, "hgw", "srv1"], arrows, ev.path(case, "nat-outbound.png"),
         "NAT: every home connection leaves from one public address, told apart by port",
         lane_labels={"hgw": "hgw (NAT)", "srv1": f"srv1 {svc['name']}"})


def chart_nat_inbound(ev):
    case = "nat/inbound"
    src = ev.run["network"]["cloud"][ev.case(case)["args"]["from"]]
    home = ev.case(case)["args"]["home_host"]
    arrows = []
    for p in read_ip_packets(ev.path(case, "srv1.pcap")):
        if p.src == src and p.proto == 6 and p.tcp_flags is not None and p.tcp_flags & (SYN | ACK) == SYN:
            arrows.append(Arrow(p.ts_ns / 1e9, "srv1", "backbone" if p.dst.startswith("192.168.") else "hgw",
                                f"SYN -> {p.dst}:{p.dport}", "C0"))
        elif p.dst == src and p.icmp_type == 3:
            arrows.append(Arrow(p.ts_ns / 1e9, "backbone", "srv1", f"ICMP unreachable from {p.src}", "C3"))
        elif p.dst == src and p.proto == 6 and p.tcp_flags is not None and p.tcp_flags & RST:
            arrows.append(Arrow(p.ts_ns / 1e9, "hgw", "srv1", f"RST from {p.src}:{p.sport}", "C3"))
    reached = [p for p in read_ip_packets(ev.path(case, "lan.pcap")) if p.src == src]
    t_end = max((a.t for a in arrows), default=0.0) + 0.001
    arrows.append(Arrow(t_end, home, home, f"home LAN: {len(reached)} packets from {src}", "C2"))
    draw(["srv1", "backbone", "hgw", home], arrows, ev.path(case, "nat-inbound.png"),
         "From outside: the private address is unrouted, the public address refuses")


def chart_whatismyip(ev):
    case = "whatismyip"
    hosts, svc = ev.run["network"]["home_hosts"], ev.run["network"]["service"]
    cloud = ev.run["network"]["cloud"]
    lane_of_ip = {ip: n for n, ip in cloud.items()}
    arrows = []
    for a in ev.case(case)["workload"]["answers"]:
        if a.get("local_ip") and a["host"] in hosts:
            lane_of_ip.setdefault(a["local_ip"], a["host"])
    for p in _first_syns(read_ip_packets(ev.path(case, "lan.pcap"))):
        if p.src in lane_of_ip and p.dst == svc["ip"]:
            arrows.append(Arrow(p.ts_ns / 1e9, lane_of_ip[p.src], "hgw", f"SYN {p.src}:{p.sport}", "C0"))
    for p in _first_syns(read_ip_packets(ev.path(case, "srv1.pcap"))):
        if p.dst == svc["ip"]:
            src = lane_of_ip.get(p.src, "hgw")
            arrows.append(Arrow(p.ts_ns / 1e9, src, "srv1", f"SYN {p.src}:{p.sport}", "C7"))
    import json
    with open(ev.path(case, "ipinfo-requests.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            ans = r.get("answer") or {}
            place = f" ({ans['city']})" if ans.get("city") else (" (bogon)" if ans.get("bogon") else "")
            arrows.append(Arrow(r["t"], "srv1", lane_of_ip.get(r["peer_ip"], "hgw"),
                                f"{r['path'].split('?')[0]}: {ans.get('ip')}{place}", "C2", dashed=True))
    draw([*hosts, "hgw", "srv1", *cloud.keys() - {"srv1"}], arrows, ev.path(case, "whatismyip.png"),
         f"What is my IP: {svc['name']} answers the address it sees",
         lane_labels={"srv1": f"srv1 {svc['name']}"})


CHARTS = ((NO_SERVER, chart_no_server), (DORA, chart_dora), ("resolver", chart_resolver),
          ("nat/outbound", chart_nat_outbound), ("nat/inbound", chart_nat_inbound),
          ("whatismyip", chart_whatismyip))


def plot_all(ev):
    """Every chart whose case ran; returns the names of those drawn."""
    drawn = []
    for case, fn in CHARTS:
        if case in ev.case_names() and not ev.case(case).get("error"):
            fn(ev)
            drawn.append(case)
    return drawn
