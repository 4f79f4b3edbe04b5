"""The files the DNS daemons and the hosts read, written from the lab's zone data.

Pure functions: :func:`zone_text` (a zone's master file), :func:`nsd_conf`,
:func:`unbound_conf` and :func:`root_hints` (the resolver knows only the lab's
root), :func:`resolv_conf_text` (a host's resolv.conf). Everything a daemon
writes (pid file, log, state) is placed in its work folder of the run.
"""

import ipaddress

from wirelab.errors import ConfigError
from wirelab.services.dns_zones import DELEGATION_TTL, absolute

UNBOUND_CONTROL_PORT = 8953     # unbound's default


def zone_text(zone):
    """The master file of ``zone``: absolute names, one record a line."""
    head = f"; zone {zone.origin} served by {zone.server} (written by wirelab)\n$ORIGIN {zone.origin}\n"
    return head + "".join(r.line() + "\n" for r in zone.records)


def zone_file_name(origin):
    return "root.zone" if origin == "." else origin.rstrip(".") + ".zone"


def _q(path):
    if '"' in str(path) or "\n" in str(path):
        raise ConfigError(f"dns: path not usable in a config file: {path!r}")
    return f'"{path}"'


def nsd_conf(server, zones, workdir):
    """nsd.conf for ``server`` serving ``zones`` (Zone...) from files in ``workdir``."""
    lines = [
        "# nsd for the lab's " + server.role + " server " + server.key + " (written by wirelab)",
        "server:",
        f"    ip-address: {server.ip}",
        "    port: 53",
        "    do-ip6: no",
        "    server-count: 1",
        "    reuseport: no",
        '    username: ""          # stay root: every file is in the run folder',
        '    chroot: ""',
        f"    zonesdir: {_q(workdir)}",
        '    database: ""',
        f"    zonelistfile: {_q(f'{workdir}/zone.list')}",
        f"    xfrdfile: {_q(f'{workdir}/xfrd.state')}",
        f"    xfrdir: {_q(workdir)}",
        f"    pidfile: {_q(f'{workdir}/nsd.pid')}",
        f"    logfile: {_q(f'{workdir}/nsd.log')}",
        "    verbosity: 1",
        "    hide-version: no",
        f"    identity: {_q(server.key + '.' + server.node)}",
        "    rrl-ratelimit: 0       # no response rate limiting: a lab, not a target",
        "    rrl-whitelist-ratelimit: 0",
        "remote-control:",
        "    control-enable: no",
    ]
    for z in zones:
        lines += ["zone:", f"    name: {_q(z.origin)}",
                  f"    zonefile: {_q(workdir + '/' + zone_file_name(z.origin))}"]
    return "\n".join(lines) + "\n"


def root_hints(zones):
    """unbound's root hints: the lab root's name and address, nothing real."""
    root = zones.zone(".")
    addr = root.rrset(root.ns_name, "A")[0].data
    return (f"; the lab's root (written by wirelab)\n"
            f".\t{DELEGATION_TTL}\tIN\tNS\t{root.ns_name}\n"
            f"{root.ns_name}\t{DELEGATION_TTL}\tIN\tA\t{addr}\n")


def unbound_conf(zones, workdir, qname_minimisation=False):
    """unbound.conf: recursive, the lab's root hints, DNSSEC validation off
    (module-config iterator only: no validator, no trust anchor)."""
    lines = [
        "# unbound, the ISP's recursive resolver (written by wirelab)",
        "server:",
        f"    interface: {zones.resolver_ip}",
        f"    outgoing-interface: {zones.resolver_out_ip}",
        "    port: 53",
        "    do-ip6: no",
        "    num-threads: 1",
        "    so-reuseport: no",
        '    username: ""',
        '    chroot: ""',
        f"    directory: {_q(workdir)}",
        f"    pidfile: {_q(f'{workdir}/unbound.pid')}",
        f"    logfile: {_q(f'{workdir}/unbound.log')}",
        "    use-syslog: no",
        "    verbosity: 1",
        "    log-queries: yes",
        f"    root-hints: {_q(f'{workdir}/root.hints')}",
        '    module-config: "iterator"      # no validator: DNSSEC validation off',
        # Lecture-style: each server is asked the full name (RFC 9156 minimisation off).
        f"    qname-minimisation: {'yes' if qname_minimisation else 'no'}",
        # Fetch no NS addresses on speculation: the capture shows only what the query needs.
        '    target-fetch-policy: "0 0 0 0 0"',
        "    prefetch: no",
        "    hide-version: no",
        "    access-control: 0.0.0.0/0 refuse",
    ]
    lines += [f"    access-control: {c} allow" for c in zones.clients]
    # unbound-control (cache flush between cases) on the resolver node's own
    # loopback: each node has its own, so nothing outside the node reaches it.
    lines += ["remote-control:", "    control-enable: yes", "    control-interface: 127.0.0.1",
              f"    control-port: {UNBOUND_CONTROL_PORT}", "    control-use-cert: no"]
    return "\n".join(lines) + "\n"


def resolv_conf_text(nameservers, node=None, search=()):
    """A resolv.conf naming ``nameservers`` (at most 3, as glibc reads)."""
    ns = [str(ipaddress.ip_address(n)) for n in nameservers]
    if not 1 <= len(ns) <= 3:
        raise ConfigError(f"dns: a resolv.conf takes 1..3 nameservers, not {len(ns)}")
    head = f"# {node}'s resolv.conf for this wirelab run (bind-mounted in its namespace only)\n" \
        if node else "# resolv.conf for this wirelab run\n"
    body = "".join(f"nameserver {n}\n" for n in ns)
    if search:
        body += "search " + " ".join(absolute(s).rstrip(".") for s in search) + "\n"
    return head + body
