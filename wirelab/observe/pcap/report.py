"""Result types of the TCP analysis and the functions that produce them.

Counter definitions (per direction of a connection; "Wireshark" means the
packet carries that ``tcp.analysis.*`` flag in Wireshark/tshark 4.0 with
default preferences, and our count equals tshark's count of such packets):

``packets``            TCP segments sent in this direction.
``data_segments``      segments with payload (length from the IP header, so
                       captures cut by a snap length still count fully).
``payload_bytes``      sum of payload lengths, retransmissions included.
``unique_bytes``       sequence space covered by payload: highest payload end
                       minus lowest payload start (holes never filled count
                       as sent).
``retransmissions``    Wireshark ``tcp.analysis.retransmission``: the sum of
                       the three kinds below (a segment has exactly one).
``fast_retransmissions``  Wireshark ``tcp.analysis.fast_retransmission``: a
                       segment that does not advance the highest sequence
                       number seen, starts at the ACK number that the other
                       side has sent at least twice as duplicate ACK (i.e. the
                       original ACK plus >= 2 duplicates, the 3-dup-ACK rule),
                       within 20 ms of the other side's last segment.
``spurious_retransmissions``  Wireshark ``tcp.analysis.spurious_retransmission``:
                       payload that the other side had already acknowledged.
``timeout_retransmissions``  Wireshark's plain retransmission (the
                       ``tcp.analysis.retransmission`` packets that are neither
                       fast nor spurious): sequence number below the highest
                       seen and not out of order by the rule below.
``out_of_order``       Wireshark ``tcp.analysis.out_of_order``: below the highest
                       sequence number seen, but less than the handshake RTT
                       (SYN to first pure ACK; 3 ms if unknown) after the
                       segment that set it, and not simply re-sending exactly
                       the last segment.
``duplicate_acks``     Wireshark ``tcp.analysis.duplicate_ack``: no payload, no
                       SYN/FIN/RST, same ACK number and same non-zero window
                       as the previous segment of this direction, and the
                       sequence number is the next expected one.
``zero_windows``       Wireshark ``tcp.analysis.zero_window``.
``lost_segments``      Wireshark ``tcp.analysis.lost_segment``: a gap in the
                       sequence numbers (segment missing from the capture).
``acked_unseen``       Wireshark ``tcp.analysis.ack_lost_segment``.
``keep_alives``        Wireshark ``tcp.analysis.keep_alive``.
``duplicate_segments`` ours: a data segment with the same sequence number and
                       length as a data segment of the same direction seen
                       earlier at this capture point (at most 65536 frames
                       before), e.g. a packet duplicated by the network.  It is
                       also counted under one of the retransmission kinds.
``rtt_*``              RTT samples taken by this direction's ACKs: an ACK that
                       raises the highest ACK number sent so far and equals the
                       end of a segment's first transmission gives the time
                       from that segment to the ACK; no sample if the other
                       side retransmitted anything in between (Karn's rule,
                       applied conservatively).  Units: milliseconds.
``goodput_bps``        ``unique_bytes * 8`` divided by the connection duration
                       (first to last packet of the connection).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import asdict, dataclass, field

from wirelab.observe.pcap import seqstate as S
from wirelab.observe.pcap.decode import decode_tcp
from wirelab.observe.pcap.flows import Conversation, FlowAnalyzer
from wirelab.observe.pcap.reader import PcapReader


@dataclass
class DirectionSummary:
    packets: int = 0
    data_segments: int = 0
    payload_bytes: int = 0
    unique_bytes: int = 0
    retransmissions: int = 0
    fast_retransmissions: int = 0
    spurious_retransmissions: int = 0
    timeout_retransmissions: int = 0
    out_of_order: int = 0
    duplicate_segments: int = 0
    duplicate_acks: int = 0
    zero_windows: int = 0
    lost_segments: int = 0
    acked_unseen: int = 0
    keep_alives: int = 0
    rtt_samples: int = 0
    rtt_min_ms: float | None = None
    rtt_mean_ms: float | None = None
    rtt_max_ms: float | None = None
    rtt_stdev_ms: float | None = None
    goodput_bps: float = 0.0
    syn: bool = False
    fin: bool = False
    rst: bool = False


@dataclass
class Handshake:
    syn: bool = False
    syn_ack: bool = False
    ack: bool = False
    syn_time: float | None = None       # seconds since the epoch
    syn_ack_time: float | None = None
    ack_time: float | None = None
    complete: bool = False


@dataclass
class Teardown:
    fin_client: bool = False
    fin_server: bool = False
    rst_client: bool = False
    rst_server: bool = False
    fin_client_time: float | None = None
    fin_server_time: float | None = None
    rst_time: float | None = None


@dataclass
class FlowSummary:
    stream: int                  # like Wireshark's tcp.stream
    client: str                  # "ip:port" of the SYN sender (else first sender)
    server: str
    first_time: float
    last_time: float
    duration: float
    handshake: Handshake
    teardown: Teardown
    client_to_server: DirectionSummary
    server_to_client: DirectionSummary

    @property
    def key(self) -> str:
        return f"{self.client} -> {self.server}"


@dataclass
class Report:
    path: str
    format: str
    linktypes: list[int]
    packets: int
    tcp_packets: int
    truncated: str | None
    flows: list[FlowSummary] = field(default_factory=list)
    compressed: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def totals(self) -> dict:
        """Sum of the integer counters of both directions over all flows."""
        out: dict[str, int] = {}
        for f in self.flows:
            for d in (f.client_to_server, f.server_to_client):
                for k, v in asdict(d).items():
                    if isinstance(v, int) and not isinstance(v, bool):
                        out[k] = out.get(k, 0) + v
        return out


def _fmt_end(hi: int, lo: int, port: int) -> str:
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return f"{ipaddress.IPv4Address(lo & 0xFFFFFFFF)}:{port}"
    return f"[{ipaddress.IPv6Address((hi << 64) | lo)}]:{port}"


def _t(ns):
    return None if ns is None else ns / 1e9


def _direction(conv: Conversation, d: int, duration_s: float) -> DirectionSummary:
    st = conv.stats[d]
    fc = st.flag_counts
    c = lambda bit: fc.get(bit, 0)  # noqa: E731
    out = DirectionSummary(
        packets=st.packets, data_segments=st.data_segments, payload_bytes=st.payload_bytes,
        unique_bytes=(st.max_end_u - st.min_seq_u) if st.min_seq_u is not None else 0,
        retransmissions=c(S.RETRANSMISSION) + c(S.FAST_RETRANSMISSION) + c(S.SPURIOUS_RETRANSMISSION),
        fast_retransmissions=c(S.FAST_RETRANSMISSION),
        spurious_retransmissions=c(S.SPURIOUS_RETRANSMISSION),
        timeout_retransmissions=c(S.RETRANSMISSION),
        out_of_order=c(S.OUT_OF_ORDER), duplicate_segments=c(S.DUPLICATE_SEGMENT),
        duplicate_acks=c(S.DUPLICATE_ACK), zero_windows=c(S.ZERO_WINDOW),
        lost_segments=c(S.LOST_SEGMENT), acked_unseen=c(S.ACKED_UNSEEN),
        keep_alives=c(S.KEEP_ALIVE), rtt_samples=st.rtt_n,
        syn=st.first_syn is not None, fin=st.first_fin is not None, rst=st.first_rst is not None,
    )
    if st.rtt_n:
        mean = st.rtt_sum / st.rtt_n
        var = max(st.rtt_sq / st.rtt_n - mean * mean, 0.0)
        out.rtt_min_ms = round(st.rtt_min / 1e6, 6)
        out.rtt_mean_ms = round(mean / 1e6, 6)
        out.rtt_max_ms = round(st.rtt_max / 1e6, 6)
        out.rtt_stdev_ms = round(math.sqrt(var) / 1e6, 6)
    if duration_s > 0:
        out.goodput_bps = round(out.unique_bytes * 8 / duration_s, 3)
    return out


def summarize(conv: Conversation) -> FlowSummary:
    cl = conv.client_side
    client = _fmt_end(*conv.ends[cl])
    server = _fmt_end(*conv.ends[1 - cl])
    dur = (conv.last_ts - conv.first_ts) / 1e9
    c2s, s2c = conv.stats
    hs = Handshake(syn=conv.syn_ts is not None, syn_ack=conv.synack_ts is not None,
                   ack=conv.hs_ack_ts is not None, syn_time=_t(conv.syn_ts),
                   syn_ack_time=_t(conv.synack_ts), ack_time=_t(conv.hs_ack_ts))
    hs.complete = hs.syn and hs.syn_ack and hs.ack
    rst_times = [x for x in (c2s.first_rst, s2c.first_rst) if x is not None]
    td = Teardown(fin_client=c2s.first_fin is not None, fin_server=s2c.first_fin is not None,
                  rst_client=c2s.first_rst is not None, rst_server=s2c.first_rst is not None,
                  fin_client_time=_t(c2s.first_fin), fin_server_time=_t(s2c.first_fin),
                  rst_time=_t(min(rst_times)) if rst_times else None)
    return FlowSummary(stream=conv.stream, client=client, server=server,
                       first_time=conv.first_ts / 1e9, last_time=conv.last_ts / 1e9, duration=dur,
                       handshake=hs, teardown=td,
                       client_to_server=_direction(conv, 0, dur),
                       server_to_client=_direction(conv, 1, dur))


def _run(path, keep_segments: bool, exact: bool, batch_packets: int):
    reader = PcapReader(path, max_packets=batch_packets)
    fa = FlowAnalyzer(keep_segments=keep_segments, exact=exact)
    for batch in reader:
        tb = decode_tcp(batch)
        rec = fa.feed(tb)
        if keep_segments:
            yield rec
    yield (reader, fa)


def analyze(path, *, exact: bool = False, batch_packets: int = 16384) -> Report:
    """Analyse every TCP connection of a pcap/pcapng file.

    Raises :class:`~wirelab.observe.pcap.reader.NotACaptureError` (a
    :class:`~wirelab.observe.pcap.reader.PcapFormatError`) for a file that is not
    a capture; a capture truncated mid-record is analysed up to the last
    complete packet and ``Report.truncated`` says so; clamped timestamps are
    listed in ``Report.warnings``.  ``exact=True`` forces
    the packet-by-packet analysis (slower, same results).
    """
    *_, (reader, fa) = _run(path, False, exact, batch_packets)
    return Report(path=str(path), format=reader.format, linktypes=sorted(reader.linktypes),
                  packets=reader.packets, tcp_packets=fa.tcp_packets, truncated=reader.truncated,
                  flows=[summarize(c) for c in fa.convs], compressed=reader.compressed,
                  warnings=reader.warnings)


def iter_segment_batches(path, *, exact: bool = False, batch_packets: int = 16384):
    """Yield numpy structured arrays (dtype ``SEGMENT_DTYPE``) of TCP segments.

    Fields: ``frame`` (1-based packet number), ``ts_ns``, ``stream``, ``dir``
    (0 client->server, 1 server->client), ``seq``/``ack`` (absolute),
    ``rel_seq``/``rel_ack`` (relative to the first sequence number seen in
    each direction), ``len`` (payload bytes), ``flags`` (TCP flag bits),
    ``win`` (raw window field), ``ipid`` (-1 for IPv6), ``tsval``/``tsecr``
    (TCP timestamps, -1 if absent), ``analysis`` (bit set of
    :mod:`wirelab.observe.pcap.seqstate` flags), ``rtt_ns`` (RTT sample carried by
    this ACK, -1 if none).  Rows are in capture order.
    """
    for item in _run(path, True, exact, batch_packets):
        if isinstance(item, tuple):
            return
        yield item


def iter_segments(path, **kw):
    """Yield one dict per TCP segment (see :func:`iter_segment_batches`)."""
    names = None
    for arr in iter_segment_batches(path, **kw):
        names = names or arr.dtype.names
        for row in arr.tolist():
            yield dict(zip(names, row))


def analysis_names(analysis: int) -> list[str]:
    """Names of the analysis flags set in ``analysis``."""
    return [name for bit, name in S.FLAG_NAMES.items() if analysis & bit]


__all__ = ["Report", "FlowSummary", "DirectionSummary", "Handshake", "Teardown",
           "analyze", "iter_segment_batches", "iter_segments", "analysis_names"]
