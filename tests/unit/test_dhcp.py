"""DHCP service parts without root: dnsmasq and dhclient command lines, their
configs, the renewal timer model, lease files, and the hook script run for real
(with a stand-in ``ip`` on PATH) in a temporary folder."""

import hashlib
import json
import os
import random
import subprocess

import pytest

from wirelab.errors import ConfigError
from wirelab.services import dhcp
from wirelab.services.dhcp import ClientConfig, ServerConfig

HOME = ServerConfig("hgw", "hgw-eth1", ("192.168.1.100", "192.168.1.199"), "255.255.255.0",
                    "192.168.1.1", dns=("100.64.0.1",), t1_s=4)


def test_dnsmasq_argv_is_dhcp_only_on_one_interface_with_files_in_the_workdir(tmp_path):
    argv = dhcp.dnsmasq_argv(HOME, str(tmp_path))
    assert argv[:2] == ["dnsmasq", "--no-daemon"]
    for must in ("--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=0",
                 "--interface=hgw-eth1", "--bind-interfaces",
                 "--dhcp-range=192.168.1.100,192.168.1.199,255.255.255.0,120s",
                 "--dhcp-option=option:router,192.168.1.1",
                 "--dhcp-option=option:dns-server,100.64.0.1", "--dhcp-option=option:T1,4"):
        assert must in argv, must
    files = [a.split("=", 1)[1] for a in argv if a.startswith(("--dhcp-leasefile=", "--pid-file="))]
    assert len(files) == 2 and all(os.path.dirname(f) == str(tmp_path) for f in files)
    assert not any("/etc/" in a for a in argv)


def test_dnsmasq_argv_without_dns_or_t1():
    cfg = ServerConfig("isp", "isp-eth0", ("100.64.0.2", "100.64.0.2"), "255.255.255.252", "100.64.0.1")
    argv = dhcp.dnsmasq_argv(cfg, "/w")
    assert not any("dns-server" in a or "option:T1" in a for a in argv)
    assert cfg.in_pool("100.64.0.2") and not cfg.in_pool("100.64.0.1")


@pytest.mark.parametrize("kwargs, match", [
    ({"pool": ("192.168.1.100", "192.168.2.5")}, r"not a range inside 192\.168\.1\.0/24"),
    ({"pool": ("192.168.1.150", "192.168.1.100")}, r"not a range"),
    ({"router": "192.168.1.120"}, r"router 192\.168\.1\.120 is inside the pool"),
    ({"lease_s": 20}, r"lease_s=20: dnsmasq gives no lease under 120 s"),
    ({"t1_s": 105}, r"t1_s=105 must be 1\.\.104"),
    ({"netmask": "255.0.255.0"}, r"not a netmask"),
    ({"dns": ("resolver",)}, r"DNS server 'resolver' is not an IPv4 address"),
])
def test_bad_server_configs_are_one_line_errors(kwargs, match):
    values = {"node": "hgw", "intf": "hgw-eth1", "pool": HOME.pool, "netmask": HOME.netmask,
              "router": HOME.router, "dns": HOME.dns, "t1_s": 4, **kwargs}
    with pytest.raises(ConfigError, match=match):
        ServerConfig(**values)


def test_dhclient_argv_uses_our_hook_and_our_files(tmp_path):
    cfg = ClientConfig("home1", "home1-eth0", timeout_s=3)
    paths = dhcp.client_paths(str(tmp_path / "ev"), str(tmp_path / "work"), "home1")
    argv = dhcp.dhclient_argv(cfg, paths)
    assert argv[:4] == ["dhclient", "-d", "-v", "-4"] and argv[-1] == "home1-eth0"
    assert argv[argv.index("-sf") + 1] == dhcp.HOOK and os.access(dhcp.HOOK, os.X_OK)
    assert argv[argv.index("-lf") + 1].startswith(str(tmp_path / "work"))
    assert argv[argv.index("-pf") + 1].startswith(str(tmp_path / "work"))
    assert f"WIRELAB_RESOLV_CONF={tmp_path}/ev/home1/resolv.conf" in argv
    assert "-1" not in argv
    assert "-1" in dhcp.dhclient_argv(ClientConfig("h", "h-eth0", once=True), paths)
    conf = dhcp.dhclient_conf(cfg)
    assert "timeout 3;" in conf and "initial-interval 1;" in conf and "domain-name-servers" in conf


def test_renewal_range_is_the_extremes_of_dhclients_formula():
    rng = random.Random(7)
    for t1 in (1, 2, 3, 4, 5, 10, 60, 600):
        seen = {(3 * t1 + 3) // 4 + ((rng.getrandbits(31) % t1) + 3) // 4 for _ in range(4000)}
        assert dhcp.dhclient_renewal_range(t1) == (min(seen), max(seen)), t1
    assert dhcp.dhclient_renewal_range(4) == (3, 4)
    with pytest.raises(ConfigError):
        dhcp.dhclient_renewal_range(0)


def test_parse_leases():
    text = ("1796142007 4a:32:23:40:b9:7f 192.168.1.175 * *\n"
            "1796142009 BA:98:76:66:c6:01 192.168.1.101 laptop 01:ba:98:76:66:c6:01\n")
    assert dhcp.parse_leases(text) == [
        {"expiry": 1796142007, "mac": "4a:32:23:40:b9:7f", "ip": "192.168.1.175", "hostname": None,
         "client_id": None},
        {"expiry": 1796142009, "mac": "ba:98:76:66:c6:01", "ip": "192.168.1.101", "hostname": "laptop",
         "client_id": "01:ba:98:76:66:c6:01"}]


# -- the hook, run for real ---------------------------------------------------------

def _fake_ip(folder):
    """An ``ip`` that logs its argv (one line per call) instead of touching the kernel."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ip"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{folder}/ip.calls"\nexit 0\n')
    script.chmod(0o755)
    return bin_dir


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _run_hook(tmp_path, reason, resolv=None, events=None, extra=None):
    bin_dir = tmp_path / "bin" if (tmp_path / "bin").exists() else _fake_ip(tmp_path)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "reason": reason, "interface": "home1-eth0"}
    if resolv is not None:
        env["WIRELAB_RESOLV_CONF"] = resolv
    if events is not None:
        env["WIRELAB_DHCP_EVENTS"] = events
    env.update(extra or {})
    return subprocess.run([dhcp.HOOK], env=env, capture_output=True, text=True, timeout=10)


LEASE = {"new_ip_address": "192.168.1.101", "new_subnet_mask": "255.255.255.0",
         "new_routers": "192.168.1.1 192.168.1.2", "new_domain_name_servers": "100.64.0.1 100.64.0.9",
         "new_dhcp_lease_time": "120", "new_dhcp_renewal_time": "4",
         "new_dhcp_server_identifier": "192.168.1.1"}


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def test_hook_bound_applies_the_lease_and_writes_only_the_given_files(tmp_path):
    etc_before = _sha("/etc/resolv.conf") if os.path.exists("/etc/resolv.conf") else None
    resolv, events = str(tmp_path / "run" / "resolv.conf"), str(tmp_path / "run" / "events.jsonl")
    (tmp_path / "run").mkdir()
    done = _run_hook(tmp_path, "BOUND", resolv, events, LEASE)
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path) == ["bin/ip", "ip.calls", "run/events.jsonl", "run/resolv.conf"]
    with open(resolv) as f:
        assert [line for line in f.read().splitlines() if not line.startswith("#")] == \
            ["nameserver 100.64.0.1", "nameserver 100.64.0.9"]
    assert dhcp.read_nameservers(resolv) == ["100.64.0.1", "100.64.0.9"]
    calls = (tmp_path / "ip.calls").read_text().splitlines()
    assert calls == ["-4 addr replace 192.168.1.101/255.255.255.0 dev home1-eth0",
                     "-4 route replace default via 192.168.1.1 dev home1-eth0"]
    (event,) = dhcp.read_events(events)
    assert event["reason"] == "BOUND" and event["status"] == "ok" and event["ip"] == "192.168.1.101"
    assert event["dns"] == "100.64.0.1 100.64.0.9" and event["t1"] == "4" and event["t"] > 1.6e9
    if etc_before:
        assert _sha("/etc/resolv.conf") == etc_before


def test_hook_renew_with_a_new_address_drops_the_old_one(tmp_path):
    (tmp_path / "run").mkdir()
    extra = {**LEASE, "old_ip_address": "192.168.1.150", "old_subnet_mask": "255.255.255.0"}
    done = _run_hook(tmp_path, "RENEW", str(tmp_path / "run/r.conf"), str(tmp_path / "run/e.jsonl"), extra)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ip.calls").read_text().splitlines()[0] == \
        "-4 addr del 192.168.1.150/255.255.255.0 dev home1-eth0"


@pytest.mark.parametrize("missing", ["WIRELAB_RESOLV_CONF", "WIRELAB_DHCP_EVENTS"])
def test_hook_without_its_paths_refuses_and_writes_nothing(tmp_path, missing):
    paths = {"resolv": str(tmp_path / "r.conf"), "events": str(tmp_path / "e.jsonl")}
    if missing == "WIRELAB_RESOLV_CONF":
        paths["resolv"] = None
    else:
        paths["events"] = None
    done = _run_hook(tmp_path, "BOUND", paths["resolv"], paths["events"], LEASE)
    assert done.returncode == 1 and f"{missing} is not set" in done.stderr
    assert "\n" not in done.stderr.strip()
    assert _files(tmp_path) == ["bin/ip"]


@pytest.mark.parametrize("target", ["/etc/resolv.conf", "/etc/wirelab-test-resolv.conf", "relative/r.conf"])
def test_hook_refuses_etc_and_relative_paths(tmp_path, target):
    before = _sha("/etc/resolv.conf") if os.path.exists("/etc/resolv.conf") else None
    done = _run_hook(tmp_path, "BOUND", target, str(tmp_path / "e.jsonl"), LEASE)
    assert done.returncode == 1
    assert "refusing to write under /etc" in done.stderr or "not an absolute path" in done.stderr
    assert _files(tmp_path) == ["bin/ip"] and not os.path.exists("/etc/wirelab-test-resolv.conf")
    if before:
        assert _sha("/etc/resolv.conf") == before


def test_hook_refuses_a_symlink_into_etc(tmp_path):
    link = tmp_path / "resolv.conf"
    link.symlink_to("/etc/resolv.conf")
    done = _run_hook(tmp_path, "BOUND", str(link), str(tmp_path / "e.jsonl"), LEASE)
    assert done.returncode == 1 and "refusing to write under /etc" in done.stderr
    assert not (tmp_path / "ip.calls").exists()


def test_hook_timeout_never_vouches_for_an_old_lease_and_fail_only_reports(tmp_path):
    events = str(tmp_path / "e.jsonl")
    assert _run_hook(tmp_path, "TIMEOUT", str(tmp_path / "r.conf"), events, LEASE).returncode == 1
    assert _run_hook(tmp_path, "FAIL", str(tmp_path / "r.conf"), events).returncode == 0
    assert [(e["reason"], e["status"]) for e in dhcp.read_events(events)] == [("TIMEOUT", "refused"),
                                                                             ("FAIL", "ok")]
    assert not (tmp_path / "r.conf").exists() and not (tmp_path / "ip.calls").exists()


def test_hook_event_lines_stay_json_with_hostile_values(tmp_path):
    events = str(tmp_path / "e.jsonl")
    lease = {**LEASE, "new_domain_name_servers": '1.2.3.4"}, {"x": "\\'}
    assert _run_hook(tmp_path, "BOUND", str(tmp_path / "r.conf"), events, lease).returncode == 0
    with open(events) as f:
        assert json.loads(f.readline())["dns"] == "1.2.3.4}, {x: "
