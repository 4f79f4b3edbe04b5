"""Packets up close: scapy tools run as ``wirelab packet SUBCOMMAND``.

    craft      build one IP / ICMP / UDP / TCP packet with chosen fields, send it,
               show the reply matched to it (craft.py)
    sniff      one line per packet, live or from a capture; TCP sequence numbers
               relative to each direction's first (sniff.py, describe.py)
    trace      TTL-probe traceroute with UDP, ICMP echo or TCP SYN (trace.py)
    handshake  a TCP client by hand against a kernel server (handshake.py)

scapyenv.py loads scapy quietly and refreshes its view of interfaces and
routes inside a namespace; options.py holds the shared command-line pieces.
Each tool module has ``main(argv, prog) -> int``; cli.py dispatches to them.
"""
