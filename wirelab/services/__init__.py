"""Services an ISP gives a home network, run as real daemons inside the emulated namespaces.

- ``dhcp``: dnsmasq DHCP servers and a udhcpc client with the project's own hook script
  (never the stock one: it would rewrite the machine's /etc/resolv.conf).
- ``nat``: the home router's masquerade, an nftables table owned by the run.
- ``dns``: root, TLD and authoritative servers and the ISP's recursive resolver.

Nothing here reaches the machine's real interfaces, routes or resolver.
"""
