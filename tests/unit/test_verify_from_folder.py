"""traceroute's and routing's verify, run on small results folders made here
(no root): every claim holds on a faithful folder, the one claim a fault
concerns fails on a folder with that fault, and verifying reads only the folder.
"""

import json
import os
import sys

import dpkt
import pytest

from wirelab.experiment import registry
from wirelab.experiment.core import reverify
from wirelab.experiment.evidence import Evidence, write_json
from wirelab.net import route_reference

MAC = {"h1": b"\x02\x00\x00\x00\x00\x01", "r1": b"\x02\x00\x00\x00\x00\x02",
       "h2": b"\x02\x00\x00\x00\x00\x03", "gw": b"\x02\x00\x00\x00\x00\x09"}


def module(name):
    """The module of ``experiments/<name>.py``, loaded as ``wirelab verify`` loads it."""
    return sys.modules[registry.load(name).__module__]


def frame(src_mac, dst_mac, ip):
    return bytes(dpkt.ethernet.Ethernet(src=src_mac, dst=dst_mac, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def ip(src, dst, ttl, payload):
    proto = dpkt.ip.IP_PROTO_UDP if isinstance(payload, dpkt.udp.UDP) else dpkt.ip.IP_PROTO_ICMP
    packet = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))),
                        ttl=ttl, p=proto, data=payload)
    packet.len = len(bytes(packet))
    return packet


def write_pcap(path, frames):
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for i, buf in enumerate(frames):
            writer.writepkt(buf, ts=1.0 + i / 1000)


def case_record(name, args, captures, workload=None, error=None):
    return {"name": name, "args": args, "netem": [], "faults": [], "workload": workload, "error": error,
            "seconds": 0.1, "captures": [{"name": c, "packets": 1, "problems": [], "dropped_by_kernel": 0,
                                          "dropped_by_interface": 0} for c in captures]}


# -- traceroute: h1 -- r1 -- h2, one pair ------------------------------------------------
def traceroute_folder(folder, echo_ttl=63, skip_exceeded=False, star=False, capture_problem=None, error=None):
    tr = module("traceroute")
    from topologies.line import LineTopo
    case = tr.pair_case(LineTopo(n=1), "h1", "h2")
    a = case.args
    assert a["expected"] == ["10.0.0.2", "10.0.1.2"] and a["routers"] == 1
    os.makedirs(folder / case.name)
    write_json(str(folder / "params.json"), {"experiment": "traceroute",
                                             "params": {"line_routers": 1, "internet_pairs": 0, "wait": 1.0}})
    write_json(str(folder / "run.json"), {"cases": [case.name]})
    probes = {1: range(33434, 33437), 2: range(33437, 33440)}
    at_src, at_dst = [], []
    for ttl, ports in probes.items():
        for port in ports:
            udp = dpkt.udp.UDP(sport=40000, dport=port, ulen=8)
            at_src.append(frame(MAC["h1"], MAC["r1"], ip(a["src_ip"], a["dst_ip"], ttl, udp)))
            quoted = dpkt.icmp.ICMP.TimeExceed(data=ip(a["src_ip"], a["dst_ip"], 1, udp))
            if ttl == 1 and not skip_exceeded:
                icmp = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_TIMEXCEED, code=0, data=quoted)
                at_src.append(frame(MAC["r1"], MAC["h1"], ip(a["expected"][0], a["src_ip"], 64, icmp)))
            if ttl == 2:
                at_dst.append(frame(MAC["r1"], MAC["h2"], ip(a["src_ip"], a["dst_ip"], ttl - 1, udp)))
                icmp = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_UNREACH, code=dpkt.icmp.ICMP_UNREACH_PORT,
                                      data=dpkt.icmp.ICMP.Unreach(data=ip(a["src_ip"], a["dst_ip"], 1, udp)))
                at_src.append(frame(MAC["r1"], MAC["h1"], ip(a["dst_ip"], a["src_ip"], 63, icmp)))
    echo = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_ECHO, data=dpkt.icmp.ICMP.Echo(id=1, seq=1))
    at_dst.append(frame(MAC["r1"], MAC["h2"], ip(a["src_ip"], a["dst_ip"], echo_ttl, echo)))
    src_pcap, dst_pcap = tr.pcap_names("h1", "h2")
    write_pcap(folder / case.name / src_pcap, at_src)
    write_pcap(folder / case.name / dst_pcap, at_dst)
    stdout = ("traceroute to 10.0.1.2 (10.0.1.2), 5 hops max, 60 byte packets\n"
              f" 1  10.0.0.2  0.101 ms  {'*' if star else '0.031 ms'}  0.030 ms\n"
              " 2  10.0.1.2  0.2 ms  0.1 ms  0.1 ms\n")
    rec = case_record(case.name, a, ["h1:h1-eth0", "h2:h2-eth0"], error=error, workload={
        "traceroute_argv": [], "traceroute_exit": 0, "traceroute_stdout": stdout, "ping_exit": 0})
    if capture_problem:
        rec["captures"][1]["problems"] = [capture_problem]
    write_json(str(folder / case.name / "case.json"), rec)
    return tr.TracerouteExperiment


def verdicts(cls, folder, writable=False):
    return [c.ok for c in cls.verify(Evidence(str(folder), cls.Params, writable=writable))]


def test_traceroute_verify_holds_on_a_faithful_folder_and_writes_nothing(tmp_path):
    cls = traceroute_folder(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    claims = cls.verify(Evidence(str(tmp_path), cls.Params))
    assert [(c.ok, c.measured) for c in claims] == [(True, "1/1 pairs")] * 6
    assert sorted(p.name for p in tmp_path.rglob("*")) == before   # a re-verify saves nothing
    assert verdicts(cls, tmp_path, writable=True) == [True] * 6
    hops = json.loads((tmp_path / "hops.json").read_text())
    assert hops[0]["ping_ttls"] == [63] and hops[0]["arrival_ttls"] == [[2, 1]] * 3
    _, again, _ = reverify(tmp_path)
    assert [c.to_dict() for c in again] == [c.to_dict() for c in claims]


@pytest.mark.parametrize("fault,failing", [
    ({"echo_ttl": 62}, "ttl"),
    ({"skip_exceeded": True}, "icmp"),
    ({"star": True}, "rtt"),
    ({"capture_problem": "tcpdump stopped with 1 received packets not written"}, "captures"),
])
def test_traceroute_verify_fails_the_claim_a_fault_concerns(tmp_path, fault, failing):
    cls = traceroute_folder(tmp_path, **fault)
    keys = ["hops", "icmp", "ttl", "probes", "rtt", "captures"]
    assert verdicts(cls, tmp_path) == [k != failing for k in keys]


def test_traceroute_failed_case_fails_every_claim_with_its_reason(tmp_path):
    cls = traceroute_folder(tmp_path, error={"stage": "capture", "type": "CaptureError", "message": "no tcpdump"})
    claims = cls.verify(Evidence(str(tmp_path), cls.Params))
    assert not any(c.ok for c in claims) and all("no tcpdump" in c.evidence for c in claims)


# -- routing: one router r1, one gateway 10.0.0.9 ------------------------------------------
def routing_folder(folder, probe_mac=MAC["gw"], kernel_gateway="10.0.0.9", planned=("r1",)):
    routing = module("routing")
    main = [{"dst": "10.0.0.0/24", "gateway": None, "dev": "r1-eth0", "type": 1},
            {"dst": "10.0.0.0/8", "gateway": "10.0.0.9", "dev": "r1-eth0", "type": 1}]
    local = [{"dst": "10.0.0.1/32", "gateway": None, "dev": "r1-eth0", "type": 2}]
    checks = []
    for dst in ("10.0.0.7", "10.5.5.5", "10.0.0.1", "192.0.2.1"):
        ref = route_reference.reference_choice(local, main, dst)
        kernel = {"error": 101} if ref is None else {k: ref[k] for k in ("gateway", "dev", "type")}
        checks.append({"dst": dst, "kernel": kernel})
    checks[1]["kernel"]["gateway"] = kernel_gateway
    rules = [{"priority": 0, "table": 255}, {"priority": 32766, "table": 254}, {"priority": 32767, "table": 253}]
    write_json(str(folder / "params.json"), {"experiment": "routing",
                                             "params": {"destinations": 4, "seed": 1, "packets": True}})
    write_json(str(folder / "lookups.json"), {"r1": {"tables": {"main": main, "local": local}, "rules": rules,
                                                     "checks": checks, "zoom": {}, "ip_forward": "1"}})
    write_json(str(folder / "owners.json"), {"10.0.0.1": "r1", "10.0.0.9": "gw"})
    name = "packets/r1-10.0.0.0_8"
    write_json(str(folder / "run.json"), {"cases": [name], "planned_routers": list(planned), "interfaces": [
        {"node": "r1", "intf": "r1-eth0", "ip": "10.0.0.1", "mac": "02:00:00:00:00:02"},
        {"node": "gw", "intf": "gw-eth0", "ip": "10.0.0.9", "mac": "02:00:00:00:00:09"}]})
    os.makedirs(folder / name)
    udp = dpkt.udp.UDP(sport=40000, dport=33434, ulen=8)
    write_pcap(folder / name / routing.PROBE_PCAP, [frame(MAC["r1"], probe_mac, ip("10.0.0.1", "10.5.5.5", 64, udp))])
    args = {"router": "r1", "route": "10.0.0.0/8", "dst": "10.5.5.5", "egress": "r1-eth0", "gateway": "10.0.0.9"}
    write_json(str(folder / name / "case.json"),
               case_record(name, args, ["r1:r1-eth0"], workload={"probe_written": True}))
    return routing.RoutingExperiment


def test_routing_verify_holds_on_a_faithful_folder(tmp_path):
    cls = routing_folder(tmp_path)
    ev = Evidence(str(tmp_path), cls.Params, writable=True)
    claims = cls.verify(ev)
    assert [c.ok for c in claims] == [True] * 5 and claims[0].measured == "4/4"
    assert ev.metrics["packets"] == {"sent": 1, "confirmed": 1}
    sample = json.loads((tmp_path / "packet_checks.json").read_text())[0]
    assert (sample["gateway_node"], sample["captured_on"]) == ("gw", "gw:gw-eth0")


@pytest.mark.parametrize("fault,failing", [
    ({"kernel_gateway": "10.0.0.8"}, 0),          # the kernel chose another next hop
    ({"planned": ("r1", "r2")}, 1),               # a planned router was not checked
    ({"probe_mac": MAC["h2"]}, 4),                # the probe went to the wrong MAC
])
def test_routing_verify_fails_the_claim_a_fault_concerns(tmp_path, fault, failing):
    cls = routing_folder(tmp_path, **fault)
    assert verdicts(cls, tmp_path) == [i != failing for i in range(5)]
