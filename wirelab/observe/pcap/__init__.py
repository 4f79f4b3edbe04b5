"""The house's capture reader and its Wireshark-equivalent TCP analysis.

Reading (any pcap/pcapng, plain or gzip-compressed; see
:mod:`wirelab.observe.pcap.reader`): ``PcapReader(path)`` yields batches,
``iter_frames(path)`` yields ``(linktype, ts_ns, bytes)``, ``count_packets(path)``.
Errors: ``PcapFormatError`` (a :class:`~wirelab.errors.WirelabError`, exit 2)
and its subclass ``NotACaptureError``.

TCP header bits: :mod:`wirelab.observe.pcap.tcpflags` (``FIN``, ``SYN``, ...,
``letters()``).  Analysis flags of a segment (Wireshark's ``tcp.analysis.*``):
:mod:`wirelab.observe.pcap.seqstate`, exported here as ``analysis``.

``analyze(path) -> Report`` summarises every TCP connection (handshake,
teardown, bytes, retransmissions by kind, out-of-order, duplicate ACKs, RTT,
goodput; see :mod:`wirelab.observe.pcap.report` for the exact definitions, which
follow Wireshark's ``tcp.analysis.*`` flags).  ``iter_segment_batches(path)``
and ``iter_segments(path)`` give per-segment records with the same analysis
flags, for time-sequence graphs and for matching packets between captures.
"""

from wirelab.observe.pcap import seqstate as analysis
from wirelab.observe.pcap import tcpflags
from wirelab.observe.pcap.flows import SEGMENT_DTYPE
from wirelab.observe.pcap.reader import (NotACaptureError, PcapFormatError, PcapReader, count_packets,
                                         iter_frames)
from wirelab.observe.pcap.report import (DirectionSummary, FlowSummary, Handshake, Report, Teardown,
                                         analysis_names, analyze, iter_segment_batches, iter_segments)

__all__ = ["analyze", "iter_segment_batches", "iter_segments", "analysis_names", "Report",
           "FlowSummary", "DirectionSummary", "Handshake", "Teardown", "PcapFormatError",
           "NotACaptureError", "PcapReader", "iter_frames", "count_packets", "SEGMENT_DTYPE",
           "analysis", "tcpflags"]
