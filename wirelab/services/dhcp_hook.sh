#!/bin/sh
# wirelab's dhclient hook (dhclient -sf THIS): applies a lease inside the node's
# network namespace with ip(8) and writes the DNS servers it names into the
# per-run, per-host file WIRELAB_RESOLV_CONF. Debian's own dhclient-script
# would rewrite the machine's /etc/resolv.conf: it is never used, and this
# script refuses any path under /etc.
#
# dhclient runs it with $reason and $interface, $new_* / $old_* lease values,
# and the variables given with `dhclient -e VAR=value`:
#   WIRELAB_RESOLV_CONF   absolute path of this host's resolv.conf of the run
#   WIRELAB_DHCP_EVENTS   absolute path of a JSON-lines file: one line per call
# Exit 0: done; 1: refused or failed (dhclient then declines a BOUND lease).
set -u

fail() {
    echo "wirelab dhcp hook: $*" >&2
    exit 1
}

[ -n "${WIRELAB_RESOLV_CONF:-}" ] || fail "WIRELAB_RESOLV_CONF is not set"
[ -n "${WIRELAB_DHCP_EVENTS:-}" ] || fail "WIRELAB_DHCP_EVENTS is not set"
for path in "$WIRELAB_RESOLV_CONF" "$WIRELAB_DHCP_EVENTS"; do
    case "$path" in
        /*) ;;
        *) fail "$path: not an absolute path" ;;
    esac
    # Symlinks resolved: a link into /etc is refused as /etc itself.
    case "$(readlink -m -- "$path")/" in
        /etc/*) fail "$path: refusing to write under /etc" ;;
    esac
done

started=$(date +%s.%N)
reason=${reason:-}
interface=${interface:-}

# A value for a JSON string: dhclient's values are addresses and numbers, but
# never let a quote, backslash or newline break the line.
js() {
    printf '%s' "${1:-}" | tr -d '"\\\n'
}

event() {
    printf '{"t": %s, "reason": "%s", "interface": "%s", "ip": "%s", "mask": "%s", "routers": "%s", "dns": "%s", "lease": "%s", "t1": "%s", "t2": "%s", "server": "%s", "old_ip": "%s", "status": "%s"}\n' \
        "$started" "$(js "$reason")" "$(js "$interface")" "$(js "${new_ip_address:-}")" \
        "$(js "${new_subnet_mask:-}")" "$(js "${new_routers:-}")" \
        "$(js "${new_domain_name_servers:-}")" "$(js "${new_dhcp_lease_time:-}")" \
        "$(js "${new_dhcp_renewal_time:-}")" "$(js "${new_dhcp_rebinding_time:-}")" \
        "$(js "${new_dhcp_server_identifier:-}")" "$(js "${old_ip_address:-}")" "$1" \
        >> "$WIRELAB_DHCP_EVENTS"
}

write_resolv_conf() {
    tmp="$WIRELAB_RESOLV_CONF.tmp.$$"
    {
        echo "# $interface's resolvers, from its DHCP lease (wirelab dhcp hook, $reason)"
        for ns in ${new_domain_name_servers:-}; do
            echo "nameserver $ns"
        done
    } > "$tmp" && mv -f -- "$tmp" "$WIRELAB_RESOLV_CONF"
}

case "$reason" in
    PREINIT)
        ip link set dev "$interface" up || { event failed; fail "ip link set $interface up"; }
        ;;
    BOUND|RENEW|REBIND|REBOOT)
        if [ -n "${old_ip_address:-}" ] && [ "$old_ip_address" != "${new_ip_address:-}" ]; then
            ip -4 addr del "$old_ip_address/${old_subnet_mask:-32}" dev "$interface" 2>/dev/null
        fi
        ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" \
            || { event failed; fail "ip addr replace $new_ip_address/$new_subnet_mask dev $interface"; }
        if [ -n "${new_routers:-}" ]; then
            # shellcheck disable=SC2086  # the first of a space-separated list
            set -- $new_routers
            ip -4 route replace default via "$1" dev "$interface" \
                || { event failed; fail "ip route replace default via $1 dev $interface"; }
        fi
        write_resolv_conf || { event failed; fail "cannot write $WIRELAB_RESOLV_CONF"; }
        ;;
    EXPIRE|FAIL|RELEASE|STOP)
        if [ -n "${old_ip_address:-}" ]; then
            ip -4 addr del "$old_ip_address/${old_subnet_mask:-32}" dev "$interface" 2>/dev/null
        fi
        ;;
    TIMEOUT)
        # dhclient asks whether an old lease still works: there are none here.
        event refused
        exit 1
        ;;
esac
event ok
exit 0
