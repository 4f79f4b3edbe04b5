#!/usr/bin/env bash
# Install everything wirelab needs, idempotently: apt packages, then a Python
# virtual environment (.venv) made from the system python3 with
# --system-site-packages, so Debian's/Ubuntu's `mininet` module imports, holding
# the pinned packages of requirements.txt.
#
# Then the `wirelab` command: .venv/bin/wirelab, linked as /usr/local/bin/wirelab.
#
# Used by `make setup` (and so by `make demo`, `make test`, .ci/run) and by the
# Vagrantfile. Works on Debian 12 and Ubuntu 22.04 / 24.04. Run as root (in a
# root shell, or through sudo: it asks sudo itself when there is one).
# A second run with nothing changed does no work (stamp file .setup-stamp).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# Root is needed (apt, /usr/local/bin). In a root shell, go on; otherwise ask
# sudo, when there is one (a minimal Debian has none).
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo bash "$here/scripts/setup.sh" "$@"
    fi
    echo "setup: must run as root, and there is no sudo: run it in a root shell (su -)" >&2
    exit 4
fi

APT_PACKAGES=(
    mininet            # the emulator (Python module for the system python3, mnexec)
    iproute2           # ip, tc, bridge
    iptables           # targeted faults (statistic, NFQUEUE)
    nftables           # targeted faults, per-run tables
    ethtool            # offload inspection
    tcpdump            # captures
    tshark             # cross-checks of the pcap analyser
    traceroute         # the traceroute experiment
    iperf3             # bulk transfers
    iputils-ping       # ping
    user-mode-linux    # a kernel with sch_netem, for kernels without it
    kmod               # modprobe (inside User-Mode Linux)
    gcc libc6-dev      # builds the small xstate shim linux.uml needs on CPUs with AMX
    bridge-utils       # brctl, for users of mn's own lxbr switch
    net-tools          # ifconfig, which Mininet's interface code calls
    procps psmisc      # ps, pgrep for diagnostics
    python3-venv python3-pip
    make
    nsd unbound        # DNS inside the emulated Internet (root/TLD/authoritative, resolver)
    bind9-dnsutils curl  # dig, and fetching by name (wirelab/services/dns.py)
    dnsmasq-base       # DHCP servers in the namespaces (the binary only: no system service)
    isc-dhcp-client    # dhclient, run with wirelab's own hook (wirelab/services/dhcp.py)
)
# Daemons whose packages start a system service on install (listening on the
# machine's real interfaces): the project runs its own instances inside
# namespaces only, so the system ones are kept stopped and disabled.
SYSTEM_SERVICES_OFF=(nsd unbound unbound-resolvconf)

# The `wirelab` command: .venv/bin/wirelab, a small script run by the venv's
# python that imports wirelab.cli from this checkout (found from the script's
# own real path), linked as /usr/local/bin/wirelab so that root's PATH (and
# sudo's secure_path) has it. Cheap and idempotent: run on every setup.
LINK=/usr/local/bin/wirelab
COMPLETION=/etc/bash_completion.d/wirelab
install_command() {
    local wrapper=.venv/bin/wirelab want
    want="#!$here/.venv/bin/python
# The wirelab command (written by scripts/setup.sh): wirelab.cli of the checkout
# this venv lives in, also when called through the $LINK link.
import os
import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))
from wirelab.cli import main
sys.exit(main())"
    if [ ! -x "$wrapper" ] || [ "$(cat "$wrapper")" != "$want" ]; then
        printf '%s\n' "$want" > "$wrapper.tmp" && chmod 755 "$wrapper.tmp" && mv -f "$wrapper.tmp" "$wrapper"
    fi
    # Replace only a missing link, or one to another checkout's command.
    if [ ! -e "$LINK" ] && [ ! -L "$LINK" ] || { [ -L "$LINK" ] && [[ "$(readlink "$LINK")" == */.venv/bin/wirelab ]]; }; then
        if [ "$(readlink "$LINK" || true)" != "$here/$wrapper" ]; then
            mkdir -p "$(dirname "$LINK")"
            ln -sfn "$here/$wrapper" "$LINK"
            echo "setup: $LINK -> $here/$wrapper"
        fi
    else
        echo "setup: $LINK exists and is not a wirelab link: left alone (use $here/$wrapper)" >&2
    fi
    if [ -d "$(dirname "$COMPLETION")" ] && { [ ! -f "$COMPLETION" ] || [ "${1:-}" = fresh ]; }; then
        "$wrapper" completion bash > "$COMPLETION.tmp" && mv -f "$COMPLETION.tmp" "$COMPLETION" \
            || { rm -f "$COMPLETION.tmp"; echo "setup: no bash completion written" >&2; }
    fi
    # mapreduce-manager, -worker, -submit (the EECS 485 Project 4 names), in .venv/bin.
    local mr mrwant
    for mr in manager worker submit; do
        mrwant="#!$here/.venv/bin/python
# mapreduce-$mr (written by scripts/setup.sh): wirelab.apps.mapreduce.$mr of this checkout.
import os
import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))
from wirelab.apps.mapreduce.$mr import main
sys.exit(main())"
        if [ ! -x ".venv/bin/mapreduce-$mr" ] || [ "$(cat ".venv/bin/mapreduce-$mr")" != "$mrwant" ]; then
            printf '%s\n' "$mrwant" > ".venv/bin/mapreduce-$mr.tmp" && chmod 755 ".venv/bin/mapreduce-$mr.tmp" \
                && mv -f ".venv/bin/mapreduce-$mr.tmp" ".venv/bin/mapreduce-$mr"
        fi
    done
}

# The stamp records what was installed; any change to this script or to
# requirements.txt, a moved checkout, or a missing venv, triggers a new run.
stamp_value=$( { cat "$0" requirements.txt; echo "$here"; /usr/bin/python3 --version 2>&1 || true; } | sha256sum | cut -d' ' -f1)
if [ -f .setup-stamp ] && [ "$(cat .setup-stamp)" = "$stamp_value" ] && [ -x .venv/bin/python ] \
   && .venv/bin/python -c 'import mininet.net, pyroute2, scapy, pytest' 2>/dev/null; then
    install_command
    echo "setup: up to date (.venv, apt packages and the wirelab command already installed)"
    exit 0
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# vagrant only checks the Vagrantfile (`vagrant validate`, no box needed); Debian
# 12 and Ubuntu 22.04 package it, Ubuntu 24.04 does not: install it where offered.
if ! command -v vagrant >/dev/null 2>&1; then
    if apt-cache show vagrant >/dev/null 2>&1; then
        missing+=(vagrant)
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer no, without a prompt.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -q
    # No service may start during the install (policy-rc.d 101 = "denied"); a
    # policy-rc.d already there (containers have one) is left as it is.
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}" || { [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
# Stopped and disabled every time (idempotent), where systemd runs.
if [ -d /run/systemd/system ]; then
    for svc in "${SYSTEM_SERVICES_OFF[@]}"; do
        if systemctl is-enabled --quiet "$svc" 2>/dev/null || systemctl is-active --quiet "$svc" 2>/dev/null; then
            systemctl disable --now "$svc" >/dev/null 2>&1 && echo "setup: system service $svc stopped and disabled"
        fi
    done
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import mininet.net' 2>/dev/null; then
    echo "setup: creating .venv from /usr/bin/python3 (--system-site-packages)"
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
echo "setup: installing pinned Python packages into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt

.venv/bin/python -c 'import mininet.net, pyroute2, scapy, pytest, dpkt, numpy, matplotlib' \
    || { echo "setup: the venv does not import its packages" >&2; exit 1; }
install_command fresh
echo "$stamp_value" > .setup-stamp
echo "setup: done ($(.venv/bin/python --version), mininet $(.venv/bin/python -c 'import mininet.net as m; print(m.VERSION)'))"
