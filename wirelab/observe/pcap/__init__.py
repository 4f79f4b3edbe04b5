"""Standalone TCP analysis of pcap/pcapng captures.

``analyze(path) -> Report`` summarises every TCP connection (handshake,
teardown, bytes, retransmissions by kind, out-of-order, duplicate ACKs, RTT,
goodput; see :mod:`wirelab.observe.pcap.report` for the exact definitions, which
follow Wireshark's ``tcp.analysis.*`` flags).  ``iter_segment_batches(path)``
and ``iter_segments(path)`` give per-segment records with the same analysis
flags, for time-sequence graphs and for matching packets between captures.
"""

from wirelab.observe.pcap.reader import CaptureError, NotACaptureError, PcapReader
from .report import (DirectionSummary, FlowSummary, Handshake, Report, Teardown, analyze,
                     flag_names, iter_segment_batches, iter_segments)
from wirelab.observe.pcap.flows import SEGMENT_DTYPE
from wirelab.observe.pcap import seqstate as flags

__all__ = ["analyze", "iter_segment_batches", "iter_segments", "flag_names", "Report",
           "FlowSummary", "DirectionSummary", "Handshake", "Teardown", "CaptureError",
           "NotACaptureError", "PcapReader", "SEGMENT_DTYPE", "flags"]
