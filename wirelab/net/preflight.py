"""Can this machine run the testbed? One line and a distinct exit code if not.

Exit codes (also in README): 4 not root, 3 mininet missing, 5 a tool missing.
``python -m wirelab.net.preflight`` prints a report, including whether the kernel
has ``sch_netem`` (without it, netem work runs inside User-Mode Linux).
"""

import json
import os
import shutil
import sys

from wirelab.errors import MissingToolError, NotRootError, PreflightError

# tool -> Debian/Ubuntu package that provides it
REQUIRED_TOOLS = {
    "mnexec": "mininet",
    "ip": "iproute2",
    "tc": "iproute2",
}
EXPERIMENT_TOOLS = {
    "tcpdump": "tcpdump",
    "traceroute": "traceroute",
    "ping": "iputils-ping",
    "nft": "nftables",
    "iptables": "iptables",
    "tshark": "tshark",
    "iperf3": "iperf3",
    "ethtool": "ethtool",
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
    return {tool: pkg for tool, pkg in tools.items() if shutil.which(tool) is None}


def require_basics(tools=None):
    """Raise a :class:`PreflightError` subclass unless we can build a network."""
    if not is_root():
        raise NotRootError("wirelab needs root to create network namespaces: run it with sudo")
    if not mininet_importable():
        raise PreflightError(
            f"the mininet Python module does not import under {sys.executable}: "
            "run 'sudo make setup' (apt package mininet, venv with --system-site-packages)")
    missing = missing_tools(tools or REQUIRED_TOOLS)
    if missing:
        tool, pkg = next(iter(missing.items()))
        raise MissingToolError(f"required tool '{tool}' not found: apt-get install {pkg}")


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
        "missing_tools": missing_tools({**REQUIRED_TOOLS, **EXPERIMENT_TOOLS}),
        "sch_netem": netem,
        "user_mode_linux": shutil.which("linux.uml") is not None,
    }


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m wirelab.net.preflight",
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
