"""TCP header flag bits, written once for the whole house.

Use ``from wirelab.observe.pcap.tcpflags import ACK, SYN`` (or ``tcpflags.ACK``).
Values and names as Wireshark's ``TH_*`` constants (RFC 9293, RFC 3168).
These are the bits of the TCP header; the analysis flags of a segment
(retransmission, duplicate ACK, ...) are :mod:`wirelab.observe.pcap.seqstate`'s.
"""

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# tcpdump's letters, in tcpdump's order ("." is ACK).
_LETTERS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"), (ECE, "E"), (CWR, "W"),
            (ACK, "."))


def letters(flags: int) -> str:
    """tcpdump-style flags: ``letters(SYN | ACK) == "S."``; ``"-"`` for none."""
    return "".join(ch for bit, ch in _LETTERS if flags & bit) or "-"


__all__ = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "letters"]
