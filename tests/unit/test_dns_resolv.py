"""Per-host resolv.conf, without root: the file written is the run's own, the bind
mount runs inside the node's namespaces only, and the machine's file is never a target."""

import os
import types

import pytest

from wirelab.errors import ConfigError
from wirelab.proc import _popen_argv
from wirelab.services import dns
from wirelab.services.dns import (HOST_RESOLV_CONF, ResolvConfMount, mount_argv, umount_argv, use_resolver,
                                  write_resolv_conf)


class FakeTestbed:
    """Records what would run where; ``node`` objects carry a pid like Mininet's."""

    def __init__(self, pid):
        self.node = types.SimpleNamespace(name="home1", pid=pid, shell=types.SimpleNamespace(poll=lambda: None))
        self.ran = []
        self.cleanups = []

    def resolve(self, node):
        return self.node if node in ("home1", self.node) else pytest.fail(f"unknown node {node}")

    def run(self, node, argv, timeout, check=True):
        self.ran.append(_popen_argv(node, argv))

    def add_cleanup(self, description, fn):
        self.cleanups.append((description, fn))


def test_write_resolv_conf_writes_the_runs_file(tmp_path):
    before = open(HOST_RESOLV_CONF, "rb").read()
    path = write_resolv_conf(str(tmp_path / "resolv" / "home1.conf"), ["100.64.0.1"], node="home1")
    assert path == str(tmp_path / "resolv" / "home1.conf")
    lines = open(path).read().splitlines()
    assert lines[0].startswith("# home1's resolv.conf") and lines[1:] == ["nameserver 100.64.0.1"]
    assert open(HOST_RESOLV_CONF, "rb").read() == before


def test_write_resolv_conf_refuses_the_machines_file(tmp_path):
    before = open(HOST_RESOLV_CONF, "rb").read()
    with pytest.raises(ConfigError, match="refusing"):
        write_resolv_conf(HOST_RESOLV_CONF, ["100.64.0.1"])
    link = tmp_path / "looks-harmless.conf"
    link.symlink_to(HOST_RESOLV_CONF)
    with pytest.raises(ConfigError, match="refusing"):
        write_resolv_conf(str(link), ["100.64.0.1"])
    assert open(HOST_RESOLV_CONF, "rb").read() == before


def test_a_node_in_our_own_mount_namespace_is_refused(tmp_path):
    """pid of this process: its mount namespace is the machine's: nothing may run."""
    tb = FakeTestbed(os.getpid())
    path = write_resolv_conf(str(tmp_path / "home1.conf"), ["100.64.0.1"])
    with pytest.raises(ConfigError, match="no mount namespace of its own"):
        ResolvConfMount(tb, "home1", path)
    assert tb.ran == [] and tb.cleanups == []


def test_bind_mount_argv_runs_inside_the_node_and_targets_only_resolv_conf(tmp_path, monkeypatch):
    tb = FakeTestbed(pid=424242)
    # The node's own mount namespace and its view of the file, as /proc would show them.
    monkeypatch.setattr(dns, "_mnt_ns", lambda pid: 1 if pid == "self" else 2)
    run_dir = str(tmp_path / "dns")
    monkeypatch.setattr(ResolvConfMount, "view",
                        lambda self: (os.stat(self.path).st_dev, os.stat(self.path).st_ino))
    mount = use_resolver(tb, "home1", "100.64.0.1", run_dir)
    expected_file = os.path.join(run_dir, "resolv", "home1.conf")
    assert mount.path == expected_file and os.path.exists(expected_file)
    assert tb.ran == [["mnexec", "-da", "424242", "mount", "--bind", expected_file, HOST_RESOLV_CONF]]
    assert [d for d, _ in tb.cleanups] == ["unmount resolv.conf of home1"]
    mount.remove()
    mount.remove()      # idempotent
    assert tb.ran[1:] == [["mnexec", "-da", "424242", "umount", HOST_RESOLV_CONF]]


def test_a_mount_the_node_does_not_see_is_an_error(tmp_path, monkeypatch):
    tb = FakeTestbed(pid=424242)
    monkeypatch.setattr(dns, "_mnt_ns", lambda pid: 1 if pid == "self" else 2)
    monkeypatch.setattr(ResolvConfMount, "view", lambda self: (0, 0))
    with pytest.raises(dns.DnsError, match="does not see"):
        use_resolver(tb, "home1", ["100.64.0.1"], str(tmp_path))
    # the mount that did happen is undone by the registered cleanup
    assert len(tb.cleanups) == 1
    tb.cleanups[0][1]()
    assert tb.ran[-1][-2:] == ["umount", HOST_RESOLV_CONF]


def test_argv_shapes():
    assert mount_argv("x.conf") == ["mount", "--bind", os.path.abspath("x.conf"), HOST_RESOLV_CONF]
    assert umount_argv() == ["umount", HOST_RESOLV_CONF]


def test_captures_declared_for_the_home_host_and_the_resolvers_upstream():
    from topologies.internet import InternetTopo
    points = dns.dns_captures(InternetTopo())
    assert [(p.node, p.intf, p.file) for p in points] == [
        ("home1", "home1-eth0", "dns-at-home1.pcap"), ("isp", "isp-eth1", "dns-at-resolver-upstream.pcap")]
    assert dns.DNS_SNAPLEN == 0
