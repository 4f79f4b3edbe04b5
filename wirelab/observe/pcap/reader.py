"""Streaming reader for pcap and pcapng files, in batches of packets.

The reader never holds more than one read block (``BLOCK_BYTES``) plus one
partial record of the file in memory.  It hands out :class:`Batch` objects:
one ``bytes`` buffer and numpy arrays that locate each packet inside it, so the
decoder can gather header fields for a whole batch with vectorised indexing
instead of building a Python object per packet.

Supported: pcap (both byte orders, micro- and nanosecond magic) and pcapng
(sections of either byte order, several interfaces each with its own link
type, ``if_tsresol`` and ``if_tsoffset``; Enhanced, Simple and obsolete Packet
blocks).  Anything else raises :class:`NotACaptureError`.  A file that ends in
the middle of a record is reported through :attr:`PcapReader.truncated`
(after the complete packets were delivered), never by an exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

# Big enough that per-block overhead vanishes, small enough to be cache- and
# memory-friendly; a record larger than this is handled by growing the buffer.
BLOCK_BYTES = 4 << 20

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D

# pcapng block types
_IDB, _PB, _SPB, _EPB = 1, 2, 3, 6


class CaptureError(Exception):
    """A file cannot be read as a capture; the message is one line."""


class NotACaptureError(CaptureError):
    """The file does not start with a pcap or pcapng magic number."""

    def __init__(self, path: str, magic: bytes):
        self.path = path
        self.magic = magic
        shown = "0x" + magic.hex() + ("" if len(magic) == 4 else f", file is only {len(magic)} bytes long")
        super().__init__(f"{path}: not a pcap or pcapng file (magic {shown})")


@dataclass
class Batch:
    """Packets of one read block.

    ``buf`` holds the raw bytes; packet *i* is ``buf[offset[i]:offset[i] +
    caplen[i]]``.  ``frame`` is the 1-based packet number in the file (what
    Wireshark calls ``frame.number``), ``ts_ns`` the capture time in integer
    nanoseconds since the epoch, ``linktype`` the DLT of that packet.
    """

    buf: bytes
    offset: np.ndarray   # int64
    caplen: np.ndarray   # int64
    wirelen: np.ndarray  # int64
    ts_ns: np.ndarray    # int64
    linktype: np.ndarray  # int32
    frame: np.ndarray    # int64

    def __len__(self) -> int:
        return len(self.offset)


class PcapReader:
    """Iterate over a capture file as :class:`Batch` objects.

    ``max_packets`` bounds the number of packets per batch.  After the
    iteration, ``packets`` is the number of packets read and ``truncated`` is
    a one-line description if the file ended inside a record (else ``None``).
    """

    def __init__(self, path: str, max_packets: int = 65536):
        self.path = str(path)
        self.max_packets = max_packets
        self.packets = 0
        self.truncated: str | None = None
        self.format = ""
        self.linktypes: set[int] = set()
        with open(self.path, "rb") as f:
            head = f.read(4)
        if len(head) < 4:
            raise NotACaptureError(self.path, head)
        le = struct.unpack("<I", head)[0]
        if le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            self.format, self._endian = "pcap", "<"
        elif struct.unpack(">I", head)[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            self.format, self._endian = "pcap", ">"
        elif le == PCAPNG_SHB:
            self.format, self._endian = "pcapng", "<"
        else:
            raise NotACaptureError(self.path, head)

    def __iter__(self):
        if self.format == "pcap":
            return self._iter_pcap()
        return self._iter_pcapng()

    # -- pcap ---------------------------------------------------------------

    def _iter_pcap(self):
        with open(self.path, "rb") as f:
            gh = f.read(24)
            if len(gh) < 24:
                self.truncated = "truncated in the pcap file header"
                return
            e = self._endian
            magic, _vmaj, _vmin, _tz, _sig, _snap, network = struct.unpack(e + "IHHiIII", gh)
            nanos = magic == PCAP_MAGIC_NS
            # The upper bits of the link type field may hold FCS information.
            linktype = network & 0x0FFFFFFF
            self.linktypes.add(linktype)
            rec = struct.Struct(e + "IIII")
            unpack_from = rec.unpack_from
            hdr_dtype = np.dtype([("s", e + "u4"), ("f", e + "u4"), ("incl", e + "u4"), ("orig", e + "u4")])
            frame0 = 1
            tail = b""
            eof = False
            while not eof:
                chunk = f.read(BLOCK_BYTES)
                eof = not chunk
                buf = tail + chunk if tail else chunk
                n = len(buf)
                offs: list[int] = []
                append = offs.append
                off = 0
                limit = self.max_packets
                while off + 16 <= n:
                    incl = unpack_from(buf, off)[2]
                    end = off + 16 + incl
                    if end > n:
                        if incl > 0x10000000:
                            self.truncated = f"corrupt record length {incl} after {self.packets + len(offs)} packets"
                            eof = True
                        break
                    append(off)
                    off = end
                    if len(offs) >= limit:
                        # Emit now to bound the batch size.
                        yield self._pcap_batch(buf, offs, hdr_dtype, nanos, linktype, frame0)
                        frame0 += len(offs)
                        offs = []
                        append = offs.append
                if offs:
                    yield self._pcap_batch(buf, offs, hdr_dtype, nanos, linktype, frame0)
                    frame0 += len(offs)
                tail = buf[off:]
                if eof and tail and self.truncated is None:
                    self.truncated = f"truncated after {self.packets} packets"

    def _pcap_batch(self, buf, offs, hdr_dtype, nanos, linktype, frame0):
        o = np.asarray(offs, dtype=np.int64)
        u8 = np.frombuffer(buf, dtype=np.uint8)
        # Gather the 16-byte record headers with one fancy-index operation.
        idx = o[:, None] + np.arange(16, dtype=np.int64)[None, :]
        hdr = u8[idx].view(hdr_dtype).reshape(-1)
        sec = hdr["s"].astype(np.int64)
        frac = hdr["f"].astype(np.int64)
        ts = sec * 1_000_000_000 + (frac if nanos else frac * 1000)
        caplen = hdr["incl"].astype(np.int64)
        self.packets += len(o)
        return Batch(buf, o + 16, caplen, hdr["orig"].astype(np.int64), ts,
                     np.full(len(o), linktype, dtype=np.int32),
                     np.arange(frame0, frame0 + len(o), dtype=np.int64))

    # -- pcapng -------------------------------------------------------------

    def _iter_pcapng(self):
        with open(self.path, "rb") as f:
            tail = b""
            eof = False
            e = "<"
            ifaces: list[tuple[int, int, int]] = []  # (linktype, ticks/s, offset s)
            frame0 = 1
            while not eof:
                chunk = f.read(BLOCK_BYTES)
                eof = not chunk
                buf = tail + chunk if tail else chunk
                n = len(buf)
                offs: list[int] = []
                caps: list[int] = []
                wires: list[int] = []
                tss: list[int] = []
                lts: list[int] = []
                off = 0
                while off + 12 <= n:
                    btype = struct.unpack_from(e + "I", buf, off)[0]
                    if btype == PCAPNG_SHB:
                        bom = struct.unpack_from("<I", buf, off + 8)[0]
                        if bom == PCAPNG_BOM:
                            e = "<"
                        elif bom == 0x4D3C2B1A:
                            e = ">"
                        else:
                            self.truncated = f"bad pcapng byte-order magic after {self.packets + len(offs)} packets"
                            eof = True
                            break
                        ifaces = []
                    blen = struct.unpack_from(e + "I", buf, off + 4)[0]
                    if blen < 12 or blen % 4:
                        self.truncated = f"corrupt pcapng block after {self.packets + len(offs)} packets"
                        eof = True
                        break
                    if off + blen > n:
                        break
                    if btype == _EPB:
                        iid, hi, lo, cap, wire = struct.unpack_from(e + "IIIII", buf, off + 8)
                        lt, tps, tsoff = ifaces[iid] if iid < len(ifaces) else (-1, 1_000_000, 0)
                        ticks = (hi << 32) | lo
                        offs.append(off + 28)
                        caps.append(min(cap, blen - 32))
                        wires.append(wire)
                        tss.append(_ticks_to_ns(ticks, tps) + tsoff * 1_000_000_000)
                        lts.append(lt)
                    elif btype == _SPB:
                        wire = struct.unpack_from(e + "I", buf, off + 8)[0]
                        lt, tps, tsoff = ifaces[0] if ifaces else (-1, 1_000_000, 0)
                        offs.append(off + 12)
                        caps.append(min(wire, blen - 16))
                        wires.append(wire)
                        tss.append(0)  # SPBs carry no timestamp
                        lts.append(lt)
                    elif btype == _PB:
                        iid, _drops, hi, lo, cap, wire = struct.unpack_from(e + "HHIIII", buf, off + 8)
                        lt, tps, tsoff = ifaces[iid] if iid < len(ifaces) else (-1, 1_000_000, 0)
                        offs.append(off + 28)
                        caps.append(min(cap, blen - 32))
                        wires.append(wire)
                        tss.append(_ticks_to_ns((hi << 32) | lo, tps) + tsoff * 1_000_000_000)
                        lts.append(lt)
                    elif btype == _IDB:
                        lt = struct.unpack_from(e + "H", buf, off + 8)[0]
                        tps, tsoff = _idb_options(buf, off + 16, off + blen - 4, e)
                        ifaces.append((lt, tps, tsoff))
                        self.linktypes.add(lt)
                    off += blen
                    if len(offs) >= self.max_packets:
                        yield self._ng_batch(buf, offs, caps, wires, tss, lts, frame0)
                        frame0 += len(offs)
                        offs, caps, wires, tss, lts = [], [], [], [], []
                if offs:
                    yield self._ng_batch(buf, offs, caps, wires, tss, lts, frame0)
                    frame0 += len(offs)
                tail = buf[off:]
                if eof and tail and self.truncated is None:
                    self.truncated = f"truncated after {self.packets} packets"

    def _ng_batch(self, buf, offs, caps, wires, tss, lts, frame0):
        self.packets += len(offs)
        return Batch(buf, np.asarray(offs, dtype=np.int64), np.asarray(caps, dtype=np.int64),
                     np.asarray(wires, dtype=np.int64), np.asarray(tss, dtype=np.int64),
                     np.asarray(lts, dtype=np.int32),
                     np.arange(frame0, frame0 + len(offs), dtype=np.int64))


def _ticks_to_ns(ticks: int, ticks_per_s: int) -> int:
    if ticks_per_s == 1_000_000_000:
        return ticks
    if ticks_per_s == 1_000_000:
        return ticks * 1000
    return ticks * 1_000_000_000 // ticks_per_s


def _idb_options(buf, off: int, end: int, e: str) -> tuple[int, int]:
    """Return (ticks per second, timestamp offset in s) from IDB options."""
    tps, tsoff = 1_000_000, 0
    while off + 4 <= end:
        code, olen = struct.unpack_from(e + "HH", buf, off)
        if code == 0:
            break
        if code == 9 and olen >= 1:  # if_tsresol
            v = buf[off + 4]
            tps = 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
        elif code == 14 and olen >= 8:  # if_tsoffset
            tsoff = struct.unpack_from(e + "q", buf, off + 4)[0]
        off += 4 + ((olen + 3) & ~3)
    return tps, tsoff
