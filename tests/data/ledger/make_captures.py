"""Generate the ledger's test captures: a TCP transfer seen on both sides of a
link that dropped, duplicated and reordered chosen packets (deterministic).

    .venv/bin/python tests/data/ledger/make_captures.py   # rewrites the files here

    client 10.1.0.1:40000 ->  [upstream.pcap]  == link (5 ms) ==  [downstream.pcap]  -> server 10.2.0.1:5001

Written: ``upstream.pcap`` (Ethernet), ``downstream.pcap`` (Linux SLL, as
``tcpdump -i any`` writes, to exercise both link types) and ``truth.json``: what
the generator did to each packet, which the tests compare the ledger with.

The script (times in ms, client side):
  handshake; the first SYN is dropped and sent again 1000 ms later;
  12 data segments of 100 bytes, 1 ms apart;
  segment 4 dropped, retransmitted (fast retransmit) after three duplicate ACKs;
  segment 7 duplicated by the link;
  segment 9 held 3 ms longer, so segment 10 overtakes it (9 is reordered);
  the receiver's ACK of segment 2 dropped on the way back;
  the client's FIN dropped, sent again 200 ms later; the server's FIN; last ACK.
"""

import json
import os

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import CookedLinux, Ether
from scapy.packet import Raw
from scapy.utils import PcapWriter

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT, SERVER = ("10.1.0.1", 40000), ("10.2.0.1", 5001)
DELAY_MS = 5.0
MSS = 100
EPOCH = 1_700_000_000.0
CLIENT_ISN, SERVER_ISN = 1000, 500000


def payload(i):
    return bytes((i * 7 + k) % 256 for k in range(MSS))


class Link:
    """Records each packet at the departure and arrival points with its fate."""

    def __init__(self):
        self.up, self.down = [], []  # (t_ms, scapy packet)
        self.truth = []
        self.ipid = {"c": 100, "s": 9000}

    def send(self, t, who, flags, seq, ack, data=b"", fate="deliver", extra_ms=0.0, label=""):
        src, dst = (CLIENT, SERVER) if who == "c" else (SERVER, CLIENT)
        self.ipid[who] += 1
        pkt = IP(src=src[0], dst=dst[0], id=self.ipid[who], flags="DF", ttl=64) / \
            TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack, window=65535,
                options=[("NOP", None), ("NOP", None), ("Timestamp", (int(t * 10), 0))])
        if data:
            pkt = pkt / Raw(data)
        before, after = (self.up, self.down) if who == "c" else (self.down, self.up)
        before.append((t, pkt))
        arrive = t + DELAY_MS + extra_ms
        copies = {"deliver": 1, "drop": 0, "dup": 2}[fate]
        for k in range(copies):
            after.append((arrive + 0.01 * k, pkt.copy()))
        self.truth.append({"who": who, "label": label, "t_ms": t, "ip_id": self.ipid[who],
                           "seq": seq, "len": len(data), "flags": flags, "fate": fate,
                           "reordered": extra_ms > 0})
        return arrive


def script():
    link = Link()
    c_seq, s_seq = CLIENT_ISN, SERVER_ISN
    link.send(0.0, "c", "S", c_seq, 0, fate="drop", label="syn")
    t = link.send(1000.0, "c", "S", c_seq, 0, label="syn retransmitted")
    t = link.send(t + 0.1, "s", "SA", s_seq, c_seq + 1, label="syn-ack")
    c_seq += 1
    s_seq += 1
    link.send(t + 0.1, "c", "A", c_seq, s_seq, label="handshake ack")
    t0 = t + 1.0
    fates = {4: ("drop", 0.0), 7: ("dup", 0.0), 9: ("deliver", 3.0)}
    arrivals = []
    for i in range(1, 13):
        fate, extra = fates.get(i, ("deliver", 0.0))
        seq = c_seq + (i - 1) * MSS
        arr = link.send(t0 + i, "c", "PA", seq, s_seq, payload(i), fate, extra, f"data {i}")
        if fate != "drop":
            arrivals.append((arr, i))
    # The retransmission of segment 4 leaves after the third duplicate ACK
    # (segments 5, 6, 7 arrive out of sequence) -- scripted, not simulated.
    retx_t = t0 + 13 + 2 * DELAY_MS
    arr = link.send(retx_t, "c", "PA", c_seq + 3 * MSS, s_seq, payload(4), label="data 4 retransmitted")
    arrivals.append((arr, 4))
    # The server ACKs each arrival cumulatively.
    have = set()
    for arr, i in sorted(arrivals):
        have.add(i)
        n = 0
        while n + 1 in have:
            n += 1
        fate = "drop" if (i == 2) else "deliver"
        link.send(arr + 0.1, "s", "A", s_seq, c_seq + n * MSS, fate=fate, label=f"ack after data {i}")
    end = c_seq + 12 * MSS
    tf = retx_t + 20
    link.send(tf, "c", "FA", end, s_seq, fate="drop", label="fin")
    t = link.send(tf + 200, "c", "FA", end, s_seq, label="fin retransmitted")
    t = link.send(t + 0.1, "s", "FA", s_seq, end + 1, label="server fin")
    link.send(t + 0.1, "c", "A", end + 1, s_seq + 1, label="last ack")
    return link


def write(path, events, cooked):
    w = PcapWriter(path, linktype=113 if cooked else 1, sync=True)
    for t, pkt in sorted(events, key=lambda e: e[0]):
        frame = (CookedLinux(pkttype=0, lladdrtype=1, src=b"\x02\x00\x00\x00\x00\x02") / pkt) if cooked \
            else (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt)
        frame.time = EPOCH + t / 1000.0
        w.write(frame)
    w.close()


def main(out_dir=HERE):
    link = script()
    write(os.path.join(out_dir, "upstream.pcap"), link.up, cooked=False)
    write(os.path.join(out_dir, "downstream.pcap"), link.down, cooked=True)
    with open(os.path.join(out_dir, "truth.json"), "w") as f:
        json.dump({"delay_ms": DELAY_MS, "client": list(CLIENT), "server": list(SERVER),
                   "client_isn": CLIENT_ISN, "server_isn": SERVER_ISN,
                   "packets": link.truth}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", default=HERE,
                        help="where to write the captures (default: next to this script)")
    args = parser.parse_args()
    if not os.path.isdir(args.out_dir):
        parser.error(f"{args.out_dir}: not a directory")
    main(args.out_dir)
