"""``wirelab packet SUBCOMMAND``: the scapy tools, one module each.

    wirelab packet craft DST [fields]       one packet out, the reply matched to it
    wirelab packet sniff [-i IFACE|-r FILE]  one line per packet
    wirelab packet trace DST [--proto P]    TTL-probe traceroute
    wirelab packet handshake ...            a TCP client by hand

Also ``python -m wirelab.packets.cli ...`` (inside an emulated host:
``tb.run(host, [sys.executable, "-m", "wirelab.packets.cli", ...])``).
A subcommand's module is imported only when it is chosen, so scapy loads only
for the tool that runs, and a tool that is missing affects no other.
"""

import argparse
import importlib
import sys

from wirelab.errors import ConfigError, WirelabError

PROG = "wirelab packet"

SUBCOMMANDS = {   # name: (module, one line for the overview)
    "craft": ("wirelab.packets.craft", "build and send one IP/ICMP/UDP/TCP packet, show the matched reply"),
    "sniff": ("wirelab.packets.sniff", "one line per packet, live or from a pcap (relative seq/ack)"),
    "trace": ("wirelab.packets.trace", "TTL-probe traceroute with UDP, ICMP echo or TCP SYN probes"),
    "handshake": ("wirelab.packets.handshake", "a TCP client by hand: handshake, data, retransmission, FIN"),
}


def top_parser(prog):
    width = max(len(n) for n in SUBCOMMANDS)
    overview = "\n".join(f"  {name:{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Packets up close: scapy tools that craft, sniff and trace. Sending and live "
        "capture need root; run them inside an emulated host ('h1 wirelab packet ...' in "
        "Mininet's CLI, or tb.run(host, [sys.executable, '-m', 'wirelab.packets.cli', ...])).",
        epilog=f"subcommands ('{prog} SUBCOMMAND --help' for each one's options):\n{overview}")
    parser.add_argument("subcommand", metavar="SUBCOMMAND", help="one of the subcommands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv, prog=PROG):
    """Run one subcommand; its exit code. Errors are raised as WirelabErrors
    (the caller's guard prints one line)."""
    argv = list(argv)
    parser = top_parser(prog)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        raise ConfigError(f"unknown subcommand {name!r}; choose from {', '.join(SUBCOMMANDS)}")
    module_name = SUBCOMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ConfigError(f"{name} is not available in this version of wirelab") from None
    sub = f"{prog} {name}"
    try:
        return module.main(rest, sub)
    except WirelabError as exc:   # name the subcommand in the one line
        print(f"{sub}: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    from wirelab.cli import main_guard   # the entry point's one-line errors and exit codes
    sys.exit(main_guard(lambda: main(sys.argv[1:]), PROG))
