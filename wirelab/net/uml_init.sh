#!/bin/bash
# PID 1 of a User-Mode Linux guest booted by wirelab/net/uml.py (run_in_uml).
#
#   host                                   UML guest (this script)
#   ----                                   -----------------------
#   linux.uml ... init=<ctl>/init   --->   mount proc/sys/dev/pts/tmpfs, load modules
#     wirelab_ctl=<ctl>                    mount <ctl> and the writable dirs (hostfs, rw)
#     wirelab_token=<hex>                  run argv from <ctl>/argv in <ctl>/cwd with <ctl>/env
#   <ctl>/argv,env,cwd (NUL-separated)     write the exit status to <ctl>/rc, power off
#   stdout <- con0 (fd:1), stderr <- ttyS0 (fd:2)
#
# The root file system is the host's, read-only (hostfs). The kernel passes the
# unknown boot parameters wirelab_ctl and wirelab_token to us as environment
# variables. Everything the command must not see from here is printed *before*
# "<token> start" or *after* "<token> end": the host strips it from the stream.
# The argument vector and environment are read as NUL-separated data, never
# evaluated, so no quoting can inject shell code.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

ctl=${wirelab_ctl:-}
token=${wirelab_token:-}
log=/dev/null   # becomes $ctl/init.log once $ctl is mounted

# note MESSAGE: append to the log, prefixed by the guest's uptime (boot profiling).
note() {
	local up=? _
	read -r up _ </proc/uptime 2>/dev/null
	printf '%s %s\n' "$up" "$*" >>"$log"
}

power_off() {
	sync
	# sysrq 'o' powers off without needing an init system; poweroff -f is the fallback.
	echo o >/proc/sysrq-trigger 2>/dev/null || poweroff -f -f
	while :; do sleep 60; done
}

fail() {
	# Before "start" the host keeps this on its boot log and shows it in its error.
	printf 'wirelab-uml-init: %s\n' "$*"
	note "error: $*"
	power_off
}

[ -n "$ctl" ] && [ -n "$token" ] || { echo "wirelab-uml-init: wirelab_ctl/wirelab_token not set"; power_off; }

mountpoint -q /proc || mount -t proc proc /proc || fail "cannot mount /proc"
mountpoint -q /sys || mount -t sysfs sysfs /sys || fail "cannot mount /sys"
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev || fail "cannot mount /dev"
# A private devpts instance with a usable ptmx: without it Mininet's hosts fail
# with "out of pty devices".
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts || fail "cannot mount /dev/pts"
rm -f /dev/ptmx && ln -s pts/ptmx /dev/ptmx || fail "cannot link /dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "cannot mount /dev/shm"
for d in /run /tmp /var/log /var/tmp; do
	[ -d "$d" ] || continue   # the root is read-only: we cannot create missing ones
	mode=0755
	[ "$d" = /tmp ] || [ "$d" = /var/tmp ] && mode=1777
	mount -t tmpfs -o "mode=$mode" tmpfs "$d" || fail "cannot mount tmpfs on $d"
done

# hostfs_rw DIR [ro]: show the host directory DIR at the same path, read-write
# unless "ro". DIR may lie under one of the tmpfs above, so create the mount point.
hostfs_mount() {
	local dir=$1 opts=$1
	[ "${2:-}" = ro ] && opts="ro,$dir"
	mkdir -p -- "$dir" 2>/dev/null
	mount -t hostfs -o "$opts" none "$dir"
}
hostfs_mount "$ctl" || fail "cannot mount the control directory $ctl"
log=$ctl/init.log
: >"$log"
note "mounted the control directory"

# Read-only first: a writable directory may lie inside the read-only one (the
# results/ folder of a checkout under /tmp), and a later mount would hide it.
while IFS= read -r -d '' dir; do
	hostfs_mount "$dir" ro || fail "cannot mount host directory $dir read-only"
	note "read-only: $dir"
done <"$ctl/readonly"
while IFS= read -r -d '' dir; do
	hostfs_mount "$dir" || fail "cannot mount host directory $dir read-write"
	note "writable: $dir"
done <"$ctl/writable"

# Kernel modules ship in /usr/lib/uml/modules/<version>; modprobe looks in
# /lib/modules/<version>. If /lib/modules exists, a tmpfs over it gives us a
# place for a bind mount. If it does not (the read-only root cannot grow it),
# point modprobe at a module root under /run: MODPROBE_OPTIONS for commands,
# and a wrapper as the kernel's modprobe helper for on-demand loading.
kver=$(uname -r)
moddir=/usr/lib/uml/modules/$kver
modprobe_options=
if [ ! -d "$moddir" ]; then
	note "no modules directory $moddir"
elif [ -d /lib/modules ]; then
	mount -t tmpfs -o mode=0755 tmpfs /lib/modules &&
		mkdir -p "/lib/modules/$kver" &&
		mount --bind "$moddir" "/lib/modules/$kver" || fail "cannot bind $moddir on /lib/modules/$kver"
else
	modroot=/run/wirelab/modroot
	mkdir -p "$modroot/lib/modules" && ln -s "$moddir" "$modroot/lib/modules/$kver" || fail "cannot make $modroot"
	modprobe_options="-d $modroot"
	printf '#!/bin/sh\nexec /sbin/modprobe -d %s "$@"\n' "$modroot" >/run/wirelab/modprobe &&
		chmod 0755 /run/wirelab/modprobe &&
		echo /run/wirelab/modprobe >/proc/sys/kernel/modprobe || fail "cannot install the modprobe helper"
fi
export MODPROBE_OPTIONS=$modprobe_options

# netem and veth are the point of booting this kernel: failing to load them fails
# the boot. The rest are what Mininet and the experiments use; the kernel loads
# most of them on demand anyway, so a missing one is only noted.
for m in sch_netem veth; do
	modprobe "$m" || fail "cannot load kernel module $m"
	note "module: $m"
done
optional="bridge dummy ifb sch_htb sch_tbf sch_prio sch_fq_codel sch_ingress
	cls_u32 cls_matchall act_mirred act_gact xt_statistic iptable_filter
	iptable_mangle iptable_nat nf_tables nfnetlink_queue"
# One modprobe process for all: each process start is costly in UML.
modprobe -a $optional 2>>"$log"
for m in $optional; do
	if [ -d "/sys/module/$m" ]; then note "module: $m"; else note "module missing: $m"; fi
done

ip link set lo up 2>>"$log"

# The command's stdout is the console (con0, host fd 1), its stderr ttyS0 (host
# fd 2). No \n -> \r\n translation: the host must get the bytes as written.
stty -onlcr 2>/dev/null
stty -onlcr <>/dev/ttyS0 2>/dev/null

argv=() envv=()
readarray -d '' -t argv <"$ctl/argv"
readarray -d '' -t envv <"$ctl/env"
IFS= read -r -d '' cwd <"$ctl/cwd"
[ "${#argv[@]}" -gt 0 ] || fail "empty argv"
[ -d "$cwd" ] || fail "working directory $cwd does not exist inside the guest"

note "running the command"
printf '%s start\n' "$token"
(
	cd -- "$cwd" || exit 126
	# Exactly the caller's environment: drop what the kernel and this script set.
	for name in $(compgen -e); do unset "$name"; done
	for kv in "${envv[@]}"; do export -- "$kv"; done
	[ -n "$modprobe_options" ] && export MODPROBE_OPTIONS="$modprobe_options"
	export WIRELAB_IN_UML=1   # in_uml() relies on it
	exec -- "${argv[@]}"
) </dev/null 2>/dev/ttyS0
rc=$?
sync
printf '%d\n' "$rc" >"$ctl/rc.tmp" && mv -f -- "$ctl/rc.tmp" "$ctl/rc"
sync
printf '%s end\n' "$token"
power_off
