"""The capture reader of the house: pcap and pcapng, plain or gzip-compressed.

The reader never holds more than one read block (``BLOCK_BYTES``) plus one
partial record of the file in memory.  It hands out :class:`Batch` objects:
one ``bytes`` buffer and numpy arrays that locate each packet inside it, so the
decoder can gather header fields for a whole batch with vectorised indexing
instead of building a Python object per packet.

Supported: pcap (both byte orders, micro- and nanosecond magic) and pcapng
(sections of either byte order, several interfaces each with its own link
type, ``if_tsresol`` and ``if_tsoffset``; Enhanced, Simple and obsolete Packet
blocks), either of them gzip-compressed (recognised by the gzip magic, not by
the file name, as tshark does).  Link layers are decoded in
:mod:`wirelab.observe.pcap.decode`.

Errors: a file that is not a capture raises :class:`NotACaptureError`; every
other problem found before the first packet raises :class:`PcapFormatError`
(both :class:`~wirelab.errors.WirelabError`, one line).  A file that ends in
the middle of a record, or holds a corrupt record, is reported through
:attr:`PcapReader.truncated` after the complete packets before it were
delivered, never by an exception.  Timestamps are checked: one that does not
fit in int64 nanoseconds (after the year 2262, e.g. a pcapng high word of
0xFFFFFFFF) is clamped and counted in :attr:`PcapReader.warnings`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from wirelab.errors import WirelabError

# Big enough that per-block overhead vanishes, small enough to be cache- and
# memory-friendly; a record larger than this is handled by growing the buffer.
BLOCK_BYTES = 4 << 20
# Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD: a pcap record longer than this
# is corrupt (tshark refuses it as "bigger than maximum").
MAX_RECORD_BYTES = 262_144
# A pcapng block longer than this is taken as corrupt (Wireshark's limit,
# MAX_BLOCK_SIZE in wiretap/pcapng.c, is of the same order).
MAX_BLOCK_BYTES = 16 << 20

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
GZIP_MAGIC = b"\x1f\x8b"

# pcapng block types and their minimum lengths (header, fixed fields, trailer).
_IDB, _PB, _SPB, _EPB = 1, 2, 3, 6
_MIN_BLOCK = {PCAPNG_SHB: 28, _IDB: 20, _PB: 32, _SPB: 16, _EPB: 32}

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)



class _GzipStream:
    """Decompress a gzip file (one or more members) as it is read.

    Unlike :class:`gzip.GzipFile`, which raises and drops what it already
    decompressed in that call, a corrupt or cut stream here ends the data
    after the last good byte and leaves the reason in :attr:`error`, so the
    packets before the damage are still delivered (as tshark does).
    """

    RAW_CHUNK = 1 << 20

    def __init__(self, path: str):
        self._f = open(path, "rb")
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._out = bytearray()
        self._done = False
        self.error: str | None = None

    def read(self, n: int) -> bytes:
        while len(self._out) < n and not self._done:
            raw = self._f.read(self.RAW_CHUNK)
            try:
                if not raw:
                    self._done = True
                    if not self._d.eof:
                        self.error = "the compressed stream is cut short"
                    break
                self._out += self._d.decompress(raw)
                while self._d.eof and self._d.unused_data:  # a further gzip member
                    rest = self._d.unused_data
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    self._out += self._d.decompress(rest)
            except zlib.error as exc:
                self._done = True
                self.error = _one_line(exc)
        out = bytes(self._out[:n])
        del self._out[:n]
        return out

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PcapFormatError(WirelabError):
    """A file cannot be read as a capture; the message is one line.

    Exit code 2, as for :class:`~wirelab.errors.ConfigError`: the input given
    is unusable and nothing was done (``tools/pcapstat.py`` documents it).
    """

    exit_code = 2


class NotACaptureError(PcapFormatError):
    """The file does not start with a pcap or pcapng magic number."""

    def __init__(self, path: str, magic: bytes, compressed: bool = False):
        self.path = path
        self.magic = magic
        shown = "0x" + magic.hex() + ("" if len(magic) == 4 else f", file is only {len(magic)} bytes long")
        what = "gzip-compressed file holds no" if compressed else "not a"
        super().__init__(f"{path}: {what} pcap or pcapng file (magic {shown})")


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


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


class PcapReader:
    """Iterate over a capture file as :class:`Batch` objects.

    ``max_packets`` bounds the number of packets per batch.  After the
    iteration, ``packets`` is the number of packets read, ``truncated`` a
    one-line description if the file ended inside a record or a record was
    corrupt (else ``None``), ``warnings`` one-line notes (clamped timestamps),
    ``compressed`` whether the file was gzip-compressed.
    """

    def __init__(self, path, max_packets: int = 65536):
        self.path = str(path)
        self.max_packets = max_packets
        self.packets = 0
        self.truncated: str | None = None
        self.format = ""
        self.linktypes: set[int] = set()
        self.compressed = _is_gzip(self.path)
        self.clamped_timestamps = 0
        self._stream_error: str | None = None
        with self._open() as f:
            head = f.read(4)
            if self.compressed and len(head) < 4 and f.error:
                raise PcapFormatError(f"{self.path}: corrupt gzip data ({f.error})")
        if len(head) < 4:
            raise NotACaptureError(self.path, head, self.compressed)
        le = struct.unpack("<I", head)[0]
        if le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            self.format, self._endian = "pcap", "<"
        elif struct.unpack(">I", head)[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            self.format, self._endian = "pcap", ">"
        elif le == PCAPNG_SHB:
            self.format, self._endian = "pcapng", "<"
        else:
            raise NotACaptureError(self.path, head, self.compressed)

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.clamped_timestamps:
            out.append(f"{self.clamped_timestamps} packets have timestamps outside int64 nanoseconds "
                       f"(before 1677 or after 2262); clamped")
        return out

    def __iter__(self):
        if self.format == "pcap":
            return self._iter_pcap()
        return self._iter_pcapng()

    def _open(self):
        return _GzipStream(self.path) if self.compressed else open(self.path, "rb")

    def _read(self, f, n: int) -> bytes:
        """Read up to ``n`` bytes; a corrupt or cut compressed stream ends the data."""
        data = f.read(n)
        if self.compressed and f.error and self._stream_error is None:
            self._stream_error = f.error
        return data

    def _ended(self, what: str) -> None:
        """Record why the data ended early (first reason wins)."""
        if self.truncated is None:
            self.truncated = what

    def _finish(self, tail: bytes) -> None:
        if self._stream_error is not None:
            self._ended(f"compressed data corrupt or cut after {self.packets} packets ({self._stream_error})")
        elif tail:
            self._ended(f"truncated after {self.packets} packets")

    # -- pcap ---------------------------------------------------------------

    def _iter_pcap(self):
        with self._open() as f:
            gh = self._read(f, 24)
            if len(gh) < 24:
                self._ended("truncated in the pcap file header")
                return
            e = self._endian
            magic, _vmaj, _vmin, _tz, _sig, _snap, network = struct.unpack(e + "IHHiIII", gh)
            nanos = magic == PCAP_MAGIC_NS
            # The upper bits of the link type field may hold FCS information.
            linktype = network & 0x0FFFFFFF
            self.linktypes.add(linktype)
            unpack_from = struct.Struct(e + "IIII").unpack_from
            hdr_dtype = np.dtype([("s", e + "u4"), ("f", e + "u4"), ("incl", e + "u4"), ("orig", e + "u4")])
            frame0 = 1
            tail = b""
            eof = False
            while not eof:
                chunk = self._read(f, BLOCK_BYTES)
                eof = not chunk
                buf = tail + chunk if tail else chunk
                n = len(buf)
                offs: list[int] = []
                append = offs.append
                off = 0
                limit = self.max_packets
                while off + 16 <= n:
                    incl = unpack_from(buf, off)[2]
                    if incl > MAX_RECORD_BYTES:
                        self._ended(f"corrupt record length {incl} after {self.packets + len(offs)} packets")
                        eof = True
                        break
                    end = off + 16 + incl
                    if end > n:
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
            self._finish(tail)

    def _pcap_batch(self, buf, offs, hdr_dtype, nanos, linktype, frame0):
        o = np.asarray(offs, dtype=np.int64)
        u8 = np.frombuffer(buf, dtype=np.uint8)
        # Gather the 16-byte record headers with one fancy-index operation.
        idx = o[:, None] + np.arange(16, dtype=np.int64)[None, :]
        hdr = u8[idx].view(hdr_dtype).reshape(-1)
        # u32 seconds * 1e9 + a u32 fraction stays below 2**63: no check needed.
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
        with self._open() as f:
            tail = b""
            eof = False
            e = "<"
            ifaces: list[tuple[int, int, int]] = []  # (linktype, ticks/s, offset s)
            frame0 = 1
            want = BLOCK_BYTES
            while not eof:
                chunk = self._read(f, want)
                want = BLOCK_BYTES
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
                            self._ended(f"bad pcapng byte-order magic after {self.packets + len(offs)} packets")
                            eof = True
                            break
                        ifaces = []
                    blen = struct.unpack_from(e + "I", buf, off + 4)[0]
                    if blen < _MIN_BLOCK.get(btype, 12) or blen % 4 or blen > MAX_BLOCK_BYTES:
                        self._ended(f"corrupt pcapng block (type {btype}, length {blen}) "
                                    f"after {self.packets + len(offs)} packets")
                        eof = True
                        break
                    if off + blen > n:
                        want = max(BLOCK_BYTES, off + blen - n)
                        break
                    if btype == _EPB or btype == _PB:
                        # The same layout but for the interface id: 32 bits in an
                        # Enhanced Packet Block, 16 (then 16 of drops) in the obsolete one.
                        if btype == _EPB:
                            iid, hi, lo, cap, wire = struct.unpack_from(e + "IIIII", buf, off + 8)
                        else:
                            iid, _drops, hi, lo, cap, wire = struct.unpack_from(e + "HHIIII", buf, off + 8)
                        lt, tps, tsoff = ifaces[iid] if iid < len(ifaces) else (-1, 1_000_000, 0)
                        offs.append(off + 28)
                        caps.append(min(cap, blen - 32))
                        wires.append(wire)
                        tss.append(_ticks_to_ns((hi << 32) | lo, tps) + tsoff * 1_000_000_000)
                        lts.append(lt)
                    elif btype == _SPB:
                        wire = struct.unpack_from(e + "I", buf, off + 8)[0]
                        lt, tps, tsoff = ifaces[0] if ifaces else (-1, 1_000_000, 0)
                        offs.append(off + 12)
                        caps.append(min(wire, blen - 16))
                        wires.append(wire)
                        tss.append(0)  # SPBs carry no timestamp
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
            self._finish(tail)

    def _ng_batch(self, buf, offs, caps, wires, tss, lts, frame0):
        self.packets += len(offs)
        try:
            ts = np.asarray(tss, dtype=np.int64)
        except OverflowError:
            # A timestamp beyond int64 nanoseconds (tshark shows such dates):
            # clamp it, so that the analysis still runs, and say so.
            self.clamped_timestamps += sum(1 for x in tss if not INT64_MIN <= x <= INT64_MAX)
            ts = np.asarray([min(max(x, INT64_MIN), INT64_MAX) for x in tss], dtype=np.int64)
        return Batch(buf, np.asarray(offs, dtype=np.int64), np.asarray(caps, dtype=np.int64),
                     np.asarray(wires, dtype=np.int64), ts, np.asarray(lts, dtype=np.int32),
                     np.arange(frame0, frame0 + len(offs), dtype=np.int64))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
        if code == 0 or off + 4 + olen > end:
            break
        if code == 9 and olen >= 1:  # if_tsresol
            v = buf[off + 4]
            tps = 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
        elif code == 14 and olen >= 8:  # if_tsoffset
            tsoff = struct.unpack_from(e + "q", buf, off + 4)[0]
        off += 4 + ((olen + 3) & ~3)
    return tps, tsoff


def iter_frames(path):
    """Yield ``(linktype, ts_ns, frame bytes)`` for every packet of a capture.

    The reader for code that wants whole frames one by one (few packets);
    returns the :class:`PcapReader` (for ``truncated``) as the generator's value.
    """
    reader = PcapReader(path)
    for b in reader:
        buf = b.buf
        for o, c, lt, ts in zip(b.offset.tolist(), b.caplen.tolist(), b.linktype.tolist(),
                                b.ts_ns.tolist()):
            yield lt, ts, buf[o:o + c]
    return reader


def count_packets(path) -> tuple[int, str | None]:
    """``(complete packets, truncated)`` of a capture; raises :class:`PcapFormatError`."""
    reader = PcapReader(path)
    n = sum(len(b) for b in reader)
    return n, reader.truncated
