"""Packet captures on chosen interfaces of chosen nodes (tcpdump), complete and checked.

    with Captures(tb, [("r1", "r1-eth0"), ("r2", "r2-eth1")], out_dir) as caps:
        ...traffic...
    caps.results   # one CaptureResult per capture: packets, kernel drops, parse check

Each capture is ``tcpdump -i <intf> -w <file> -s <snaplen> -U --immediate-mode
-B <KiB>`` started through ``tb.start`` (so teardown stops it even if we never
get there). It is *ready* only once tcpdump prints ``listening on <intf>`` on
stderr, which it does after the packet socket is open and bound:
:meth:`Capture.start` waits for that line with a deadline, so no packet sent
afterwards can be missed.

:meth:`Capture.stop` loses nothing that reached the capture before the stop,
even when tcpdump lags far behind on a busy machine. SIGINT makes tcpdump quit
at once, leaving unread whatever is still in its ring buffer (it is counted as
"received by filter", neither captured nor dropped). So the stop first waits
(with a deadline) until the file holds as many packets as the interface carried
since the start (netlink counters; unfiltered captures), then asks tcpdump for
its counters (SIGUSR1) until it has read everything it received; those counters
are the *checkpoint*. Then SIGINT, the exit code, the final counters, and the
file are checked. A packet received before the checkpoint but not written is a
real loss and reported; one that arrived during the stop itself (a late reply of
a finished workload, a background stream) is not part of the capture, and only
counted (``received_during_stop``). Kernel drops are reported, not hidden,
because the impairment ledger is then unreliable.

Where a capture point sees a packet (Linux): on *ingress*, the packet taps run in
``__netif_receive_skb_core`` before the ingress qdisc and before forwarding; on
*egress*, they run in ``dev_hard_start_xmit``, i.e. **after** the egress qdisc.
So tcpdump on an interface that carries a netem qdisc sees the packets netem
let through (no dropped ones, duplicates twice, delayed ones late), never what
went in. To see a link's input, capture on the interface where packets *enter*
the node that owns the netem qdisc (see ``experiments/tcp_recovery.py``).
"""

import os
import re
import signal
import subprocess
import time

from wirelab.errors import CommandError, WirelabError
from wirelab.observe.pcap.decode import LINKTYPE_ETHERNET
from wirelab.observe.pcap.reader import PcapFormatError, iter_frames
from wirelab.observe.pcap.reader import count_packets as read_packet_count
from wirelab.proc import LineReader, wait_until

# Headers only: Ethernet 14 + IPv4 up to 60 + TCP up to 60 = 134; 128 covers
# every packet we make (IPv4 20 + TCP 32 with timestamps) with room for options.
HEADER_SNAPLEN = 128
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# Kernel ring buffer per capture, KiB (tcpdump -B): libpcap's default is 2 MiB;
# 8 MiB holds about 30000 header-only packets, seconds of backlog for a tcpdump
# that gets no CPU while the workload floods the link.
RING_BUFFER_KIB = 8192

_COUNTER = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel"
                      r"|dropped by interface)$")
# What tcpdump prints on SIGUSR1 (its "info" request), on one line:
# "tcpdump: 8 packets captured, 16 packets received by filter, 0 packets dropped by kernel"
_INFO_LINE = re.compile(r"^tcpdump: \d+ packets? captured, ")


class CaptureError(WirelabError):
    """tcpdump failed to start, to stop cleanly, or wrote a file that does not parse."""


class Capture:
    """One tcpdump on ``intf`` of ``node``, writing ``path`` (a ``.pcap`` file).

    ``snaplen``: bytes kept per packet (0 = whole packets). ``bpf``: an optional
    capture filter as an argument list (e.g. ``["tcp"]``).
    """

    def __init__(self, tb, node, intf, path, snaplen=HEADER_SNAPLEN, bpf=None):
        if not path.endswith(".pcap"):
            # Ubuntu's AppArmor profile for tcpdump only lets it write *.pcap files.
            raise ValueError(f"capture file must end in .pcap: {path}")
        self.tb, self.node, self.intf, self.path = tb, node, intf, path
        self.snaplen = snaplen
        self.bpf = list(bpf or [])
        self.proc = None
        self.result = None
        self._reader = None
        self._intf_packets_at_start = None

    @property
    def name(self):
        return f"{getattr(self.node, 'name', self.node)}:{self.intf}"

    def argv(self):
        # -Z root: Debian's tcpdump drops to user "tcpdump" after opening the
        # device, which could not write into a root-owned results folder.
        # -U: write each packet as it is read; --immediate-mode: hand each
        # packet over at once, not when a ring block fills.
        return ["tcpdump", "-n", "-i", self.intf, "-w", self.path, "-s", str(self.snaplen),
                "-U", "--immediate-mode", "-B", str(RING_BUFFER_KIB), "-Z", "root", *self.bpf]

    def start(self, timeout=READY_TIMEOUT_S):
        """Start tcpdump and return once its packet socket is open."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.proc = self.tb.start(self.node, self.argv(), name=f"tcpdump {self.name}",
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = LineReader(self.proc.popen.stderr)
        try:
            wait_until(lambda: self._listening() or not self.proc.running(), timeout,
                       what=f"tcpdump on {self.name} to print 'listening on'")
        except TimeoutError as exc:
            self.proc.stop(signal.SIGINT)
            raise CaptureError(f"{exc}; stderr: {self.stderr().strip()[-300:]}") from None
        if not self._listening():
            self.proc.popen.wait(5)
            self._reader.join(5)
            raise CommandError(self.argv(), self.proc.popen.returncode, self.stderr(),
                               node=getattr(self.node, "name", None))
        # Counted after the socket is open: whatever passed before may or may
        # not be in the file, so the file can only hold more than this delta.
        self._intf_packets_at_start = self._intf_packets()
        return self

    def _listening(self):
        return self._reader.has("listening on")

    def stderr(self):
        return self._reader.text() if self._reader else ""

    def _intf_packets(self):
        """Packets received plus sent on the interface so far (netlink counters)."""
        try:
            with self.tb.iproute(self.node) as ipr:
                link = ipr.link("get", ifname=self.intf)[0]
            stats = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS")
            return stats["rx_packets"] + stats["tx_packets"]
        except Exception:  # no counters: the caller falls back to tcpdump's own
            return None

    def wait_caught_up(self, timeout=STOP_TIMEOUT_S):
        """Wait until the file holds every packet the interface carried since start.

        SIGINT makes tcpdump stop at once: packets still in its ring buffer are
        neither written nor counted as dropped (only "received by filter" shows
        them). A slow reader (a busy machine, User-Mode Linux) lags behind the
        traffic, so before stopping we wait for it to catch up. Returns True if
        it did; on timeout the stop still happens and the counters tell.
        """
        start = self._intf_packets_at_start
        if start is None or self.bpf:
            return False  # a filter keeps only some packets: nothing to compare
        def caught_up():
            now = self._intf_packets()
            return now is not None and complete_records(self.path) >= now - start
        try:
            wait_until(caught_up, timeout, what=f"tcpdump on {self.name} to catch up")
            return True
        except TimeoutError:
            return False

    def request_counters(self, timeout):
        """tcpdump's counters now (SIGUSR1 makes it print them), or None if it
        did not answer within ``timeout`` (it exited, or gets no CPU)."""
        def info_lines():
            return [line for line in list(self._reader.lines) if _INFO_LINE.match(line)]
        before = len(info_lines())
        try:
            os.kill(self.proc.pid, signal.SIGUSR1)
            wait_until(lambda: len(info_lines()) > before or not self.proc.running(), timeout,
                       what=f"tcpdump on {self.name} to report its counters")
        except (ProcessLookupError, TimeoutError):
            return None
        lines = info_lines()
        if len(lines) <= before:
            return None
        return parse_counters("\n".join(lines[-1].split(": ", 1)[1].split(", ")))

    def wait_drained(self, timeout=STOP_TIMEOUT_S):
        """Wait until tcpdump has read every packet it received; return its
        counters at that moment (the checkpoint), or the last ones on timeout."""
        last = None
        deadline = time.monotonic() + timeout
        def drained():
            nonlocal last
            now = self.request_counters(max(0.1, deadline - time.monotonic()))
            if now is None:
                return True   # not answering: the final counters will tell
            pending = now.get("received by filter", 0) - now.get("captured", 0) \
                - now.get("dropped by kernel", 0)
            # Nothing pending, or nothing moving at all (a packet libpcap itself
            # discards, e.g. lo's outgoing copy, is received but never captured).
            settled = pending <= 0 or now == last
            last = now
            return settled
        try:
            wait_until(drained, timeout, what=f"tcpdump on {self.name} to read its buffer")
        except TimeoutError:
            pass
        return last

    def stop(self, timeout=STOP_TIMEOUT_S):
        """Let tcpdump write everything it received, SIGINT it, check its exit
        and counters against the checkpoint, parse the file."""
        if self.result is not None:
            return self.result
        checkpoint = None
        if self.proc.running():
            self.wait_caught_up(timeout)
            checkpoint = self.wait_drained(timeout)
        code = self.proc.stop(signal.SIGINT, timeout=timeout)
        self._reader.join(timeout)
        counters = parse_counters(self.stderr())
        problems = []
        # tcpdump exits 0 after SIGINT; -2 (killed by our SIGINT before its
        # handler was installed) or -9 (it ignored SIGINT) leave a partial file.
        if code != 0:
            problems.append(f"tcpdump exited {code}")
        if "dropped by kernel" not in counters:
            problems.append("tcpdump printed no final counters (file may be incomplete)")
        try:
            packets_in_file = count_packets(self.path)
        except Exception as exc:
            packets_in_file = None
            problems.append(f"{self.path} does not parse: {exc}")
        received = counters.get("received by filter", 0)
        received_before_stop = received
        if checkpoint is not None and "received by filter" in checkpoint:
            received_before_stop = min(received, checkpoint["received by filter"])
        lost = received_before_stop - counters.get("captured", 0) \
            - counters.get("dropped by kernel", 0)
        if lost > 0:
            problems.append(f"tcpdump stopped with {lost} packets received before the stop "
                            "not written")
        if packets_in_file is not None and "captured" in counters \
                and packets_in_file != counters["captured"]:
            problems.append(f"file has {packets_in_file} packets, tcpdump reported "
                            f"{counters['captured']} captured")
        self.result = CaptureResult(
            name=self.name, node=getattr(self.node, "name", str(self.node)), intf=self.intf,
            path=self.path, exit_code=code, packets=packets_in_file,
            captured=counters.get("captured"),
            received_by_filter=counters.get("received by filter"),
            dropped_by_kernel=counters.get("dropped by kernel", 0),
            dropped_by_interface=counters.get("dropped by interface", 0),
            received_during_stop=received - received_before_stop,
            problems=problems)
        return self.result


class CaptureResult(dict):
    """What a stopped capture produced; a dict so it goes into metrics.json as is.

    ``complete`` is true when tcpdump exited cleanly, dropped nothing and the
    file parses with as many packets as tcpdump said it captured.
    """

    @property
    def complete(self):
        return not self["problems"] and not self["dropped_by_kernel"] \
            and not self["dropped_by_interface"]


def parse_counters(stderr_text):
    """tcpdump's exit summary as ``{"captured": n, "dropped by kernel": n, ...}``."""
    out = {}
    for line in stderr_text.splitlines():
        m = _COUNTER.match(line.strip())
        if m:
            out[m.group(2)] = int(m.group(1))
    return out


def ethernet_frames(path):
    """The frames of one of our own captures (tcpdump on a veth: Ethernet,
    checked, so a capture of another link type is an error, not garbage).

    Read with the house reader (pcap or pcapng, plain or gzip); raises
    :class:`~wirelab.observe.pcap.reader.PcapFormatError`."""
    for linktype, _ts, frame in iter_frames(path):
        if linktype != LINKTYPE_ETHERNET:
            raise PcapFormatError(f"{path}: link type {linktype}, expected Ethernet ({LINKTYPE_ETHERNET})")
        yield frame


def count_packets(path):
    """Number of complete packets in a capture; raises
    :class:`~wirelab.observe.pcap.reader.PcapFormatError` if it is not one."""
    return read_packet_count(path)[0]


def complete_records(path):
    """Complete packet records in a capture being written (0 until it has a header)."""
    try:
        return read_packet_count(path)[0]
    except (OSError, PcapFormatError):
        return 0


class Captures:
    """Several captures started together (all ready before the body runs) and
    stopped together at the end of the ``with`` block, also on exception.

    ``points``: ``[(node, intf), ...]`` or ``[(node, intf, filename), ...]``.
    """

    def __init__(self, tb, points, out_dir, snaplen=HEADER_SNAPLEN, bpf=None):
        self.captures = []
        for point in points:
            node, intf = point[0], point[1]
            name = point[2] if len(point) > 2 else f"{getattr(node, 'name', node)}-{intf}.pcap"
            self.captures.append(Capture(tb, node, intf, os.path.join(out_dir, name),
                                         snaplen=snaplen, bpf=bpf))
        self.results = []

    def __enter__(self):
        try:
            for cap in self.captures:
                cap.start()
        except BaseException:
            self._stop_all()
            raise
        return self

    def __exit__(self, *exc):
        self._stop_all()
        return False

    def _stop_all(self):
        self.results = []
        for cap in self.captures:
            if cap.proc is not None:
                self.results.append(cap.stop())
        return self.results

    def __iter__(self):
        return iter(self.captures)

    def __getitem__(self, i):
        return self.captures[i]
