"""``wirelab packet sniff``: one line per packet, live or from a capture.

Live capture uses scapy's ``AsyncSniffer`` and is confirmed started (its
``started_callback``: the capture socket is open and its BPF filter attached)
before anything else happens, so a packet sent after :class:`Sniffer`'s
``__enter__`` returns -- or after the tool prints "listening on" -- is seen.
A capture file is read with the house reader (:mod:`wirelab.observe.pcap`:
pcap, pcapng, gzip; a file that is not a capture is one line, exit 2).
"""

import contextlib
import os
import sys
import tempfile
import threading

from wirelab.errors import ConfigError, WirelabError
from wirelab.packets import scapyenv
from wirelab.packets.describe import Describer, decode
from wirelab.packets.options import ToolParser, add_json, bounded, print_json, print_line, require_root
from wirelab.proc import run, wait_until

#: Opening a packet socket and attaching a filter takes milliseconds; this is for a busy machine.
READY_TIMEOUT_S = 10.0


class SniffError(WirelabError):
    """The capture could not start (no such interface, a filter tcpdump rejects)."""

    exit_code = 6   # like a command that failed


class Sniffer:
    """A live capture that is running when ``with`` hands it over.

        with Sniffer(iface="h1-eth0", bpf="icmp") as sn:
            send(...)
            sn.wait_for(lambda p: p.haslayer(ICMP) and p[ICMP].type == 0, timeout=2)
        sn.packets   # every packet captured, in order

    ``on_packet(pkt)`` is called in the capture thread for each packet.
    ``count``/``timeout`` end the capture by themselves (``done()``); leaving
    the ``with`` block stops it in any case. ``node``: a Mininet node (or pid)
    whose network namespace to capture in, from this process (the capture
    thread is started in it and stays there); default: where we are.
    """

    def __init__(self, iface=None, bpf=None, count=0, timeout=None, on_packet=None, node=None):
        self.iface, self.bpf, self.count, self.timeout = iface, bpf, count, timeout
        self.node = node
        self.on_packet = on_packet
        self._packets = []
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._sniffer = None

    def _receive(self, pkt):
        with self._lock:
            self._packets.append(pkt)
        if self.on_packet is not None:
            self.on_packet(pkt)
        # returns None: AsyncSniffer would print anything returned

    def __enter__(self):
        scapyenv.load()
        from scapy.sendrecv import AsyncSniffer
        kwargs = {"store": False, "prn": self._receive, "started_callback": self._started.set,
                  "count": self.count}
        if self.iface:
            kwargs["iface"] = self.iface
        if self.bpf:
            kwargs["filter"] = self.bpf
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        self._sniffer = AsyncSniffer(**kwargs)
        where = scapyenv.entered(self.node) if self.node is not None else contextlib.nullcontext()
        try:
            with where:   # the thread opens its socket (and compiles the filter) in there
                self._sniffer.start()
                wait_until(lambda: self._started.is_set() or not self._sniffer.thread.is_alive(),
                           READY_TIMEOUT_S, what="the capture to start")
        except BaseException:
            self.stop()
            raise
        if not self._started.is_set():
            exc = self._sniffer.exception
            where = f" on {self.iface}" if self.iface else ""
            filt = f" with filter {self.bpf!r}" if self.bpf else ""
            raise SniffError(f"cannot capture{where}{filt}: "
                             f"{str(exc).strip().splitlines()[-1] if exc else 'the capture thread ended'}")
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def done(self):
        """Whether the capture ended by itself (count reached, timeout)."""
        return self._started.is_set() and not self._sniffer.thread.is_alive()

    def stop(self):
        """Stop capturing (idempotent); returns the packets."""
        sniffer = self._sniffer
        if sniffer is not None and sniffer.thread is not None:
            if sniffer.running and self._started.is_set():
                with contextlib.suppress(Exception):   # it may end by itself meanwhile (count)
                    sniffer.stop(join=False)
            sniffer.thread.join(READY_TIMEOUT_S)
        return self.packets

    def join(self, timeout=None):
        """Wait for the capture to end by itself; the packets."""
        self._sniffer.thread.join(timeout)
        return self.packets

    @property
    def packets(self):
        with self._lock:
            return list(self._packets)

    def wait_for(self, predicate, timeout, what="a matching packet"):
        """The first captured packet satisfying ``predicate``, within ``timeout`` s."""
        def found():
            return next((p for p in self.packets if predicate(p)), None)
        return wait_until(found, timeout, what=what)


def read_capture(path, bpf=None):
    """Yield the packets of a capture file as scapy packets with their times.

    ``bpf``: keep only what the filter matches (tcpdump applies it, after the
    house reader accepted the file)."""
    from wirelab.observe.pcap import iter_frames
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file")
    if not bpf:
        for linktype, ts_ns, data in iter_frames(path):
            yield decode(linktype, data, ts_ns)
        return
    for _ in iter_frames(path):   # a file that is not a capture: the house's one-line error
        break
    with tempfile.TemporaryDirectory(prefix="wirelab-sniff-") as folder:
        filtered = os.path.join(folder, "filtered.pcap")
        done = run(None, ["tcpdump", "-r", path, "-w", filtered, "--", bpf], timeout=60, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["tcpdump failed"])[-1]
            raise ConfigError(f"filter {bpf!r} on {path}: {last}")
        for linktype, ts_ns, data in iter_frames(filtered):
            yield decode(linktype, data, ts_ns)


def build_parser(prog):
    parser = ToolParser(
        prog=prog, description="Show one line per packet: time, src > dst, protocol, TCP flags, "
        "sequence and ACK numbers relative to each direction's first (as Wireshark), payload length, "
        "IP ID, TTL, fragment offset and MF/DF. Live (root; run it inside an emulated host: "
        "'h1 wirelab packet sniff' in Mininet's CLI) or from a capture file (-r).",
        epilog="examples:\n  wirelab packet sniff -i h1-eth0 -f 'tcp port 80' -c 10\n"
               "  wirelab packet sniff -r capture.pcap --json",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-i", "--iface", action="append", metavar="IFACE",
                        help="interface to capture on (repeatable; default: the one of the default route)")
    source.add_argument("-r", "--read", metavar="FILE", help="read a pcap/pcapng file (gzip too) instead")
    parser.add_argument("-f", "--filter", metavar="BPF", help="a BPF filter, as tcpdump's ('tcp port 80')")
    parser.add_argument("-c", "--count", type=bounded(int, 1, 10**9, "packets"), default=0,
                        help="stop after this many packets (default: no limit)")
    parser.add_argument("--timeout", type=bounded(float, 0.01, 86400.0, "seconds"),
                        help="stop capturing after this many seconds (live only)")
    add_json(parser)
    return parser


def main(argv, prog="wirelab packet sniff"):
    args = build_parser(prog).parse_args(argv)
    describer = Describer()

    def show(pkt):
        line = describer(pkt)
        if args.json:
            print_json(line.to_dict())
        else:
            print_line(line.human())

    if args.read:
        if args.timeout is not None:
            raise ConfigError("--timeout applies to a live capture, not to -r FILE")
        for n, pkt in enumerate(read_capture(args.read, args.filter), 1):
            show(pkt)
            if n == args.count:
                break
        return 0
    require_root("a live capture")
    iface = args.iface if args.iface and len(args.iface) > 1 else (args.iface or [None])[0]
    with Sniffer(iface=iface, bpf=args.filter, count=args.count, timeout=args.timeout,
                 on_packet=show) as sniffer:
        conf = scapyenv.load()
        where = ", ".join(args.iface) if args.iface else str(conf.iface)
        print(f"{prog}: listening on {where}" + (f", filter {args.filter!r}" if args.filter else ""),
              file=sys.stderr, flush=True)
        try:
            sniffer.join()
        except KeyboardInterrupt:   # Ctrl-C (or SIGINT) is how an open-ended capture ends, as tcpdump's
            sniffer.stop()
    print(f"{prog}: {len(sniffer.packets)} packets captured", file=sys.stderr, flush=True)
    return 0
