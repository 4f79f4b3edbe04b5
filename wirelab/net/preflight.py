"""Can this machine run the testbed? One line and a distinct exit code if not.

Exit codes (also in README): 4 not root, 3 mininet missing, 5 a tool missing.
Only what the code uses is checked: :data:`REQUIRED_TOOLS` (building any
network) stop a run; :data:`FEATURE_TOOLS` are reported by ``python -m
wirelab.net.preflight``, with whether the kernel has ``sch_netem`` (without it,
netem work runs inside User-Mode Linux).
"""

import json
import os
import shutil
import sys

from wirelab.errors import MissingToolError, NotRootError, PreflightError

# Only tools the code runs (grep for them before adding one). Each entry:
# tool -> (Debian/Ubuntu package, what runs it).
# Needed to build any network: require_basics() refuses to start without them.
REQUIRED_TOOLS = {
    "mnexec": ("mininet", "every node's shell, every command in a node (wirelab/proc.py)"),
    "ip": ("iproute2", "Mininet creates each veth pair with 'ip link add'"),
    "ifconfig": ("net-tools", "Mininet brings each interface up with ifconfig"),
}
# Needed by one feature each: reported by 'python -m wirelab.net.preflight',
# and the feature fails with its own one-line error where the tool is missing.
FEATURE_TOOLS = {
    "tcpdump": ("tcpdump", "packet captures (wirelab/observe/capture.py)"),
    "ping": ("iputils-ping", "experiments traceroute and tcp_recovery"),
    "traceroute": ("traceroute", "experiment traceroute"),
    "ss": ("iproute2", "socket state on failure (wirelab/apps/runner.py, tcp_recovery)"),
    "nft": ("nftables", "faults, nft back-end (wirelab/impair/nft.py)"),
    "iptables-legacy-restore": ("iptables", "faults, xtables back-end (wirelab/impair/xtables.py)"),
    "iptables-legacy-save": ("iptables", "faults, xtables back-end (wirelab/impair/xtables.py)"),
    "tc": ("iproute2", "the sch_netem probe (wirelab/net/kernel.py)"),
    "unshare": ("util-linux", "the sch_netem probe (wirelab/net/kernel.py)"),
}


def is_root():
    return os.geteuid() == 0


def mininet_importable():
    try:
        import mininet.net  # noqa: F401
    except ImportError:
        return False
    return True


def missing_tools(tools):
    """{tool: package} of the ``tools`` (a table like :data:`REQUIRED_TOOLS`) not on PATH."""
    return {tool: entry[0] if isinstance(entry, tuple) else entry
            for tool, entry in tools.items() if shutil.which(tool) is None}


def require_basics(tools=None):
    """Raise a :class:`PreflightError` subclass unless we can build a network."""
    if not is_root():
        raise NotRootError("wirelab needs root to create network namespaces: run it with sudo")
    if not mininet_importable():
        raise PreflightError(
            f"the mininet Python module does not import under {sys.executable}: "
            "run 'sudo make setup' (apt package mininet, venv with --system-site-packages)")
    tools = tools or REQUIRED_TOOLS
    missing = missing_tools(tools)
    if missing:
        tool, pkg = next(iter(missing.items()))
        entry = tools[tool]
        why = f" ({entry[1]})" if isinstance(entry, tuple) else ""
        raise MissingToolError(f"required tool '{tool}' not found{why}: apt-get install {pkg}")


def report():
    """A dict describing the machine, for ``python -m wirelab.net.preflight``."""
    netem = None
    if is_root():
        from wirelab.net.kernel import has_sch_netem
        try:
            netem = has_sch_netem()
        except Exception:  # probe unavailable: say unknown rather than guess
            netem = None
    return {
        "root": is_root(),
        "mininet": mininet_importable(),
        "missing_tools": missing_tools({**REQUIRED_TOOLS, **FEATURE_TOOLS}),
        "sch_netem": netem,
        "user_mode_linux": shutil.which("linux.uml") is not None,
    }


def main(argv=None, prog="python -m wirelab.net.preflight"):
    import argparse
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check that this machine can run wirelab; exit non-zero with one line if not.")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    info = report()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:16} {value}")
    try:
        require_basics()
    except PreflightError as exc:
        print(f"wirelab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
