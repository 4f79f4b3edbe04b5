"""Network impairment with netem: a validated spec, applied through netlink.

::

    h1 ---- r1-eth0 [netem] ~~~~~~~~~~> r2-eth0 ---- h2
            netem on r1-eth0 delays/drops what r1 SENDS toward r2 (egress);
            what r2 sends back to r1 is untouched unless r2-eth0 gets one too.

A :class:`NetemSpec` is data: frozen, validated on construction (every impossible
value is a one-line :class:`~wirelab.errors.ConfigError` before anything in the
kernel changes), parsed from ``"delay=20ms jitter=5ms loss=1%"`` or keywords, and
printed tc-style by ``str()``. :func:`apply_netem` installs it as the root qdisc
of one interface (egress of that interface, always); :func:`apply_link` does one
or both directions of a link; :func:`change_netem`, :func:`clear_netem` and
teardown (registered with ``tb.add_cleanup``) undo it; :func:`netem_stats` reads
back what the kernel actually holds, with counters, over netlink.

pyroute2 0.7.12's netem support (``ipr.tc('add', 'netem', ...)``) covers the
classic ``tc_netem_qopt`` fields, correlations, reorder, corrupt and a 32-bit
rate; it has no delay distribution tables (TCA_NETEM_DELAY_DIST is a TODO), no
Gilbert-Elliott / 4-state loss (TCA_NETEM_LOSS is undecoded) and no 64-bit
delay/rate attributes. We therefore build the RTM_NEWQDISC message ourselves with
a message class that extends pyroute2's netem options by those attributes (same
wire format as ``tc``), so distributions and ``gemodel`` work too, and decode the
kernel's replies with the same class.

Design decisions (each also stated where it is enforced):

* **Egress only.** netem is a queueing discipline; it acts on packets the node
  sends out of that interface.
* **Rate uses netem's own rate** (TCA_NETEM_RATE / RATE64), not a TBF or HTB:
  one qdisc, one set of counters, and the departure time of each packet already
  includes its serialisation time, so delay and rate compose the way a real link
  does. The price: netem's ``limit`` is then both the delay line and the
  bottleneck buffer, which is why the default limit differs with a rate (below).
* **Default limit.** netem's own default (1000 packets) silently tail-drops a
  fast flow behind a delay: at 1 Gbit/s and 20 ms about 1700 full-size packets
  are in the delay line. Without a rate we size the queue for the delay line of
  an :data:`ASSUMED_LINE_RATE_BPS` link with :data:`LIMIT_HEADROOM`, and never
  below :data:`MIN_LIMIT`, so netem is never the bottleneck. With a rate, netem
  *is* the bottleneck and its limit is the bottleneck buffer too: a floor of
  10000 packets would be 12 s of queue at 10 Mbit/s (bufferbloat, no loss, TCP
  unrecognisable), so we use the delay line plus one bandwidth-delay product of
  buffer (the classic rule of thumb), at least :data:`MIN_BOTTLENECK_BUFFER`.
  An explicit ``limit=`` always wins.
* **Jitter.** Any jitter reorders packets, because netem's queue is sorted by
  each packet's departure time (tc allows it; so do we, and ``describe()`` says
  so) -- except with a rate, where netem never sends a packet before the one
  queued ahead of it. A jitter so large that the shortest delay of the chosen
  distribution would be negative is refused: the kernel would clamp those
  delays to 0 and the distribution would no longer be the one asked for.
* **Reorder** needs a delay (netem only reorders by sending some packets
  *without* the delay) and ``gap`` needs ``reorder``.
"""

import dataclasses
import errno
import functools
import glob
import math
import os
import re
import weakref

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELQDISC, RTM_GETQDISC, RTM_NEWQDISC, TC_H_ROOT
from pyroute2.netlink.rtnl.tcmsg import sched_netem, tcmsg
from pyroute2.netlink.rtnl.tcmsg.common import tick_in_usec

from wirelab.errors import ConfigError, PreflightError, WirelabError
from wirelab.net.netns import get_offloads, open_ioctl_socket, set_offloads

# ----------------------------------------------------------------- constants

#: Packet size used to turn bytes in flight into packets: a full Ethernet frame.
#: Smaller packets mean more packets per byte; the headroom covers ACK streams.
MTU_BYTES = 1500
#: Without a rate, the speed we size netem's delay line for: above what a veth
#: pair with offloads off carries for one flow on one core (a few Gbit/s).
ASSUMED_LINE_RATE_BPS = 10_000_000_000
#: Multiplier on the delay line, for bursts and small packets.
LIMIT_HEADROOM = 1.5
#: Floor of the default limit without a rate (netem's own default is 1000).
MIN_LIMIT = 10_000
#: Floor of the bottleneck buffer with a rate: a short path's BDP is a handful
#: of packets, too few for slow start to work at all.
MIN_BOTTLENECK_BUFFER = 100
#: Largest percentage netem represents exactly: probabilities are u32 fractions.
_U32_MAX = 2**32 - 1
#: tc_netem_qopt carries delay and jitter in 32-bit psched ticks.
MAX_DELAY_MS = _U32_MAX / tick_in_usec / 1000.0
#: netem refuses distribution tables longer than this (NETEM_DIST_MAX).
NETEM_DIST_MAX = 16384
#: netem scales table entries by this: an entry of 8192 means one jitter.
NETEM_DIST_SCALE = 8192
#: Where iproute2 installs its tables (Debian: multiarch dir), TC_LIB_DIR first.
DIST_DIRS = ("/usr/lib/x86_64-linux-gnu/tc", "/usr/lib/aarch64-linux-gnu/tc",
             "/usr/lib/tc", "/usr/lib64/tc", "/lib/tc")
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")


class NetemUnavailableError(PreflightError):
    """The kernel cannot create a netem qdisc (no sch_netem)."""


# ------------------------------------------------------------ value parsing

_TIME_UNITS = {"": 1.0, "ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0,
               "us": 1e-3, "usec": 1e-3, "ns": 1e-6}
# tc's units: bit suffixes are bits per second, bps suffixes are BYTES per second.
_RATE_UNITS = {"": 1, "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9,
               "tbit": 10**12, "kibit": 2**10, "mibit": 2**20, "gibit": 2**30,
               "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9}
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)\s*([A-Za-z%]*)\s*$",
                     re.IGNORECASE)


def _split(key, value):
    m = _NUMBER.match(str(value))
    if not m:
        raise ConfigError(f"netem {key}={value!r}: not a number")
    return float(m.group(1)), m.group(2).lower()


def _finite(key, number):
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ConfigError(f"netem {key}={number!r}: not a number")
    if math.isnan(number) or math.isinf(number):
        raise ConfigError(f"netem {key}={number}: must be a finite number")
    return number


def parse_time_ms(key, value):
    """``20``, ``20ms``, ``1.5s``, ``500us`` -> milliseconds (float)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(_finite(key, value))
    number, unit = _split(key, value)
    if unit not in _TIME_UNITS:
        raise ConfigError(f"netem {key}={value!r}: unknown time unit {unit!r} (use ms, s or us)")
    return _finite(key, number * _TIME_UNITS[unit])


def parse_percent(key, value):
    """``1%`` or ``1`` (tc reads a bare number as percent too) -> percent (float)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(_finite(key, value))
    number, unit = _split(key, value)
    if unit not in ("", "%"):
        raise ConfigError(f"netem {key}={value!r}: a percentage, e.g. {key}=1%")
    return _finite(key, number)


def parse_rate_bps(key, value):
    """``10mbit``, ``1gbit``, ``10000000`` (bit/s), ``1mbps`` (bytes/s, as tc) -> bit/s."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = _finite(key, value), ""
    else:
        number, unit = _split(key, value)
    if unit not in _RATE_UNITS:
        raise ConfigError(f"netem {key}={value!r}: unknown rate unit {unit!r} (use kbit, mbit, gbit)")
    bps = _finite(key, number * _RATE_UNITS[unit])
    return int(round(bps))


def parse_count(key, value):
    if isinstance(value, bool):
        raise ConfigError(f"netem {key}={value!r}: not a whole number")
    if isinstance(value, float):
        _finite(key, value)
        if value != int(value):
            raise ConfigError(f"netem {key}={value}: must be a whole number")
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[-+]?\d+", text):
        raise ConfigError(f"netem {key}={value!r}: must be a whole number")
    return int(text)


def _gemodel(value):
    """``gemodel=1%,10%,70%,0.1%`` (p, r, 1-h, 1-k) or a sequence of percents."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,/\s]+", value.strip()) if p]
    else:
        parts = list(value)
    if not 1 <= len(parts) <= 4:
        raise ConfigError(f"netem gemodel={value!r}: give p[,r[,1-h[,1-k]]] in percent")
    numbers = [parse_percent("gemodel", p) for p in parts]
    # tc's defaults for the omitted ones: r = 100% - p, 1-h = 100%, 1-k = 0%.
    defaults = [None, 100.0 - numbers[0], 100.0, 0.0]
    return tuple(numbers + defaults[len(numbers):])


# ----------------------------------------------------- distribution tables

def distribution_dirs():
    env = os.environ.get("TC_LIB_DIR")
    dirs = [env] if env else []
    dirs += list(DIST_DIRS) + sorted(glob.glob("/usr/lib/*-linux-gnu*/tc"))
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


@functools.lru_cache(maxsize=None)
def load_distribution(name):
    """iproute2's ``<name>.dist`` table as a tuple of int16, or ConfigError.

    The kernel has no built-in tables: tc (and we) read them from iproute2's
    files and send them with the qdisc.
    """
    if name not in DISTRIBUTIONS or name == "uniform":
        raise ConfigError(f"netem distribution={name!r}: no table for it")
    for d in distribution_dirs():
        path = os.path.join(d, f"{name}.dist")
        if os.path.exists(path):
            break
    else:
        raise ConfigError(
            f"netem distribution={name}: {name}.dist not found in "
            f"{', '.join(distribution_dirs())} (install iproute2 or set TC_LIB_DIR)")
    values = []
    with open(path, encoding="ascii") as f:
        for line in f:
            for token in line.split("#", 1)[0].split():
                v = int(token)
                if not -32768 <= v <= 32767:
                    raise ConfigError(f"{path}: value {v} does not fit in 16 bits")
                values.append(v)
    if not 0 < len(values) <= NETEM_DIST_MAX:
        raise ConfigError(f"{path}: {len(values)} values; netem takes 1..{NETEM_DIST_MAX}")
    return tuple(values)


def _dist_bounds(name):
    """(lowest, highest) delay offset of a distribution, in units of jitter."""
    if name == "uniform":
        return -1.0, 1.0
    table = load_distribution(name)
    return min(table) / NETEM_DIST_SCALE, max(table) / NETEM_DIST_SCALE


# ------------------------------------------------------------------- spec

def _fmt(x):
    return f"{x:g}"


def format_rate(bps):
    for unit, scale in (("Gbit", 10**9), ("Mbit", 10**6), ("Kbit", 10**3)):
        if bps >= scale and bps % (scale // 1000 or 1) == 0:
            return f"{bps / scale:g}{unit}"
    return f"{bps}bit"


# key in parse() / from_kwargs() -> parser; the dataclass fields have the same names.
_PARSERS = {
    "delay": parse_time_ms, "jitter": parse_time_ms, "delay_corr": parse_percent,
    "distribution": None, "loss": parse_percent, "loss_corr": parse_percent,
    "gemodel": None, "reorder": parse_percent, "reorder_corr": parse_percent,
    "gap": parse_count, "duplicate": parse_percent, "duplicate_corr": parse_percent,
    "corrupt": parse_percent, "corrupt_corr": parse_percent, "rate": parse_rate_bps,
    "limit": parse_count,
}


@dataclasses.dataclass(frozen=True)
class NetemSpec:
    """One direction's impairment, in tc's vocabulary and units.

    Times in milliseconds, probabilities and correlations in percent, ``rate``
    in bit/s, ``limit`` in packets. Every field also takes a human string
    (``delay="20ms"``, ``loss="1%"``, ``rate="10mbit"``); the stored value is
    the number. ``gemodel``: Gilbert-Elliott loss ``(p, r, 1-h, 1-k)`` in percent
    (instead of ``loss``). ``limit=None``: computed, see :attr:`effective_limit`.
    """

    delay: float = 0.0
    jitter: float = 0.0
    delay_corr: float = 0.0
    distribution: str = "uniform"
    loss: float = 0.0
    loss_corr: float = 0.0
    gemodel: tuple = None
    reorder: float = 0.0
    reorder_corr: float = 0.0
    gap: int = 0
    duplicate: float = 0.0
    duplicate_corr: float = 0.0
    corrupt: float = 0.0
    corrupt_corr: float = 0.0
    rate: int = None
    limit: int = None

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        for key, parser in _PARSERS.items():
            value = getattr(self, key)
            if parser is not None and value is not None:
                set_(key, parser(key, value))
        if self.gemodel is not None:
            set_("gemodel", _gemodel(self.gemodel))
        if not isinstance(self.distribution, str):
            raise ConfigError(f"netem distribution={self.distribution!r}: a name")
        set_("distribution", self.distribution.strip().lower())
        self._validate()

    # -- validation: one line per impossible value, nothing touched yet
    def _validate(self):
        def need(cond, msg):
            if not cond:
                raise ConfigError(f"netem: {msg}")
        for key in ("delay", "jitter"):
            v = getattr(self, key)
            need(v >= 0, f"{key}={_fmt(v)}ms: must not be negative")
            need(v <= MAX_DELAY_MS, f"{key}={_fmt(v)}ms: netem's 32-bit tick field holds at most "
                                    f"{MAX_DELAY_MS / 1000:.0f}s")
        for key in ("delay_corr", "loss", "loss_corr", "reorder", "reorder_corr", "duplicate",
                    "duplicate_corr", "corrupt", "corrupt_corr"):
            v = getattr(self, key)
            need(0 <= v <= 100, f"{key}={_fmt(v)}%: a probability must be between 0% and 100%")
        if self.gemodel is not None:
            for name, v in zip(("p", "r", "1-h", "1-k"), self.gemodel):
                need(0 <= v <= 100, f"gemodel {name}={_fmt(v)}%: must be between 0% and 100%")
            need(self.loss == 0 and self.loss_corr == 0,
                 "give either loss (random) or gemodel (Gilbert-Elliott), not both")
        need(self.distribution in DISTRIBUTIONS,
             f"distribution={self.distribution!r}: one of {', '.join(DISTRIBUTIONS)}")
        need(self.delay_corr == 0 or self.jitter > 0, "delay_corr needs a jitter to correlate")
        need(self.distribution == "uniform" or self.jitter > 0,
             f"distribution={self.distribution} shapes the jitter: give jitter too")
        need(self.loss_corr == 0 or self.loss > 0, "loss_corr needs loss")
        need(self.duplicate_corr == 0 or self.duplicate > 0, "duplicate_corr needs duplicate")
        need(self.corrupt_corr == 0 or self.corrupt > 0, "corrupt_corr needs corrupt")
        need(self.reorder == 0 or self.delay > 0,
             f"reorder={_fmt(self.reorder)}% needs a delay: netem reorders by sending some "
             "packets without the delay")
        need(self.gap >= 0, f"gap={self.gap}: must not be negative")
        need(self.gap == 0 or self.reorder > 0, f"gap={self.gap} needs reorder")
        need(self.reorder_corr == 0 or self.reorder > 0, "reorder_corr needs reorder")
        if self.jitter > 0:
            low, high = _dist_bounds(self.distribution)
            shortest = self.delay + low * self.jitter
            need(shortest >= -1e-9,
                 f"jitter={_fmt(self.jitter)}ms with delay={_fmt(self.delay)}ms and "
                 f"distribution={self.distribution}: the shortest delay would be "
                 f"{_fmt(shortest)}ms; the kernel clamps it to 0 and the distribution is lost "
                 f"(largest jitter for this delay: {_fmt(self.delay / -low)}ms)")
            need(self.delay + high * self.jitter <= MAX_DELAY_MS,
                 f"delay+jitter tail exceeds {MAX_DELAY_MS / 1000:.0f}s")
        if self.rate is not None:
            need(self.rate >= 8, f"rate={self.rate}bit/s: at least 8bit (1 byte/s)")
            need(self.rate // 8 < 2**64, f"rate={self.rate}bit/s: too large")
        if self.limit is not None:
            need(self.limit >= 1, f"limit={self.limit}: at least 1 packet")
            need(self.limit <= _U32_MAX, f"limit={self.limit}: netem's limit is 32-bit")

    # -- construction
    @classmethod
    def parse(cls, text):
        """``"delay=20ms jitter=5ms loss=1%"`` (or a list of ``key=value``) -> spec.

        An empty string is no impairment at all (a valid spec)."""
        tokens = text.split() if isinstance(text, str) else list(text)
        kwargs = {}
        for token in tokens:
            key, sep, value = token.partition("=")
            key = key.strip().lower().replace("-", "_")
            if not sep or not value:
                raise ConfigError(f"netem: {token!r} is not key=value (e.g. delay=20ms)")
            if key in kwargs:
                raise ConfigError(f"netem: {key} given twice")
            kwargs[key] = value
        return cls.from_kwargs(kwargs)

    @classmethod
    def from_kwargs(cls, mapping=None, **kwargs):
        """From a dict / keywords (CLI, JSON); unknown keys are a ConfigError."""
        merged = dict(mapping or {}, **kwargs)
        merged.pop("effective_limit", None)  # derived; to_dict() writes it for readers
        unknown = sorted(set(merged) - set(_PARSERS))
        if unknown:
            raise ConfigError(f"netem: unknown key {unknown[0]!r} (known: {', '.join(_PARSERS)})")
        return cls(**merged)

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Plain data for params.json; ``from_kwargs(spec.to_dict())`` round-trips."""
        d = dataclasses.asdict(self)
        if d["gemodel"] is not None:
            d["gemodel"] = list(d["gemodel"])
        d["effective_limit"] = self.effective_limit
        return d

    # -- derived values
    @property
    def max_delay_ms(self):
        """The longest delay a packet can get (delay plus the distribution's tail)."""
        if self.jitter == 0:
            return self.delay
        return self.delay + _dist_bounds(self.distribution)[1] * self.jitter

    @property
    def delay_line_packets(self):
        """Full-size packets in flight inside netem at the (assumed) line rate."""
        rate = self.rate if self.rate is not None else ASSUMED_LINE_RATE_BPS
        return math.ceil(rate / 8 * self.max_delay_ms / 1000 / MTU_BYTES)

    @property
    def effective_limit(self):
        """The queue limit (packets) sent to the kernel; see the module docstring."""
        if self.limit is not None:
            return self.limit
        line = self.delay_line_packets
        if self.rate is None:
            return max(MIN_LIMIT, math.ceil(LIMIT_HEADROOM * line))
        return line + max(line, MIN_BOTTLENECK_BUFFER)

    @property
    def reorders(self):
        """Whether this spec reorders packets (explicitly or through jitter)."""
        return self.reorder > 0 or (self.jitter > 0 and self.rate is None)

    def __str__(self):
        """tc's own wording, e.g. ``netem delay 20ms 5ms loss 1% limit 33334``."""
        parts = ["netem"]
        if self.delay or self.jitter:
            parts += ["delay", f"{_fmt(self.delay)}ms"]
            if self.jitter:
                parts.append(f"{_fmt(self.jitter)}ms")
                if self.delay_corr:
                    parts.append(f"{_fmt(self.delay_corr)}%")
                if self.distribution != "uniform":
                    parts += ["distribution", self.distribution]
        if self.gemodel is not None:
            parts += ["loss", "gemodel"] + [f"{_fmt(v)}%" for v in self.gemodel]
        elif self.loss:
            parts += ["loss", f"{_fmt(self.loss)}%"]
            if self.loss_corr:
                parts.append(f"{_fmt(self.loss_corr)}%")
        for key in ("duplicate", "reorder", "corrupt"):
            value = getattr(self, key)
            if value:
                parts += [key, f"{_fmt(value)}%"]
                corr = getattr(self, f"{key}_corr")
                if corr:
                    parts.append(f"{_fmt(corr)}%")
                if key == "reorder" and self.gap:
                    parts += ["gap", str(self.gap)]
        if self.rate is not None:
            parts += ["rate", format_rate(self.rate)]
        parts += ["limit", str(self.effective_limit)]
        return " ".join(parts)

    # -- the kernel's view
    def netlink_options(self):
        """TCA_OPTIONS for RTM_NEWQDISC, as :class:`NetemOptions` encodes them.

        Every attribute is always sent, zero when unused: netem's change keeps
        any attribute that is absent, so a partial message would leave stale
        settings behind (e.g. the rate of the previous spec)."""
        pct = _u32_fraction
        ns = lambda ms: int(round(ms * 1e6))  # noqa: E731
        attrs = [
            ["TCA_NETEM_CORR", {"delay_corr": pct(self.delay_corr), "loss_corr": pct(self.loss_corr),
                                "dup_corr": pct(self.duplicate_corr)}],
            ["TCA_NETEM_REORDER", {"prob_reorder": pct(self.reorder),
                                   "corr_reorder": pct(self.reorder_corr)}],
            ["TCA_NETEM_CORRUPT", {"prob_corrupt": pct(self.corrupt),
                                   "corr_corrupt": pct(self.corrupt_corr)}],
            ["TCA_NETEM_LATENCY64", ns(self.delay)],
            ["TCA_NETEM_JITTER64", ns(self.jitter)],
        ]
        rate_bytes = (self.rate or 0) // 8
        attrs.append(["TCA_NETEM_RATE", {"rate": min(rate_bytes, _U32_MAX), "packet_overhead": 0,
                                         "cell_size": 0, "cell_overhead": 0}])
        if rate_bytes >= _U32_MAX:
            attrs.append(["TCA_NETEM_RATE64", rate_bytes])
        if self.gemodel is not None:
            p, r, one_minus_h, one_minus_k = self.gemodel
            # struct tc_netem_gemodel {p, r, h, k1}: h is the probability of
            # DELIVERY in the bad state (tc prints 1-h as 100% - h), k1 is the loss
            # probability in the good state (tc's 1-k as is). Checked in UML 6.1:
            # p=100% r=0% 1-h=100% loses every packet, 1-h=0% none.
            attrs.append(["TCA_NETEM_LOSS", {"attrs": [["NETEM_LOSS_GE", {
                "p": pct(p), "r": pct(r), "h": pct(100.0 - one_minus_h),
                "k1": pct(one_minus_k)}]]}])
        if self.distribution != "uniform":
            attrs.append(["TCA_NETEM_DELAY_DIST", load_distribution(self.distribution)])
        gap = self.gap or (1 if self.reorder else 0)  # as tc: reorder alone means gap 1
        return {
            "delay": min(int(self.delay * 1000 * tick_in_usec), _U32_MAX),
            "jitter": min(int(self.jitter * 1000 * tick_in_usec), _U32_MAX),
            "limit": self.effective_limit,
            "loss": pct(self.loss),
            "gap": gap,
            "duplicate": pct(self.duplicate),
            "attrs": attrs,
        }

    def expected_readback(self):
        """What :func:`netem_stats` ``['options']`` should show for this spec."""
        return {
            "delay": self.delay, "jitter": self.jitter, "delay_corr": self.delay_corr,
            "loss": self.loss, "loss_corr": self.loss_corr,
            "gemodel": self.gemodel,
            "reorder": self.reorder, "reorder_corr": self.reorder_corr,
            "gap": self.gap or (1 if self.reorder else 0),
            "duplicate": self.duplicate, "duplicate_corr": self.duplicate_corr,
            "corrupt": self.corrupt, "corrupt_corr": self.corrupt_corr,
            "rate": (self.rate // 8 * 8) if self.rate else None,
            "limit": self.effective_limit,
        }

    def mismatches(self, options):
        """Keys where the kernel's ``options`` differ from this spec (empty: same).

        Probabilities compare to within one u32 step; the distribution table is
        not dumped by the kernel and cannot be compared."""
        out = []
        for key, want in self.expected_readback().items():
            got = options.get(key)
            if isinstance(want, float) or (isinstance(want, tuple) and want):
                w = want if isinstance(want, tuple) else (want,)
                g = got if isinstance(got, (tuple, list)) else (got,)
                if got is None or len(w) != len(g) or any(
                        abs(a - b) > 1e-6 for a, b in zip(w, g)):
                    out.append((key, want, got))
            elif want != got:
                out.append((key, want, got))
        return out


def _u32_fraction(percent):
    return min(_U32_MAX, int(round(_U32_MAX * percent / 100.0)))


def _percent(u32):
    return round(100.0 * u32 / _U32_MAX, 7)


# ------------------------------------------------- netlink message classes

class NetemOptions(sched_netem.options):
    """pyroute2's netem options plus the attributes it leaves out (see top)."""

    nla_map = (
        ("TCA_NETEM_UNSPEC", "none"),
        ("TCA_NETEM_CORR", "netem_corr"),
        ("TCA_NETEM_DELAY_DIST", "array(int16)"),
        ("TCA_NETEM_REORDER", "netem_reorder"),
        ("TCA_NETEM_CORRUPT", "netem_corrupt"),
        ("TCA_NETEM_LOSS", "netem_loss"),
        ("TCA_NETEM_RATE", "netem_rate"),
        ("TCA_NETEM_ECN", "uint32"),
        ("TCA_NETEM_RATE64", "uint64"),
        ("TCA_NETEM_PAD", "none"),
        ("TCA_NETEM_LATENCY64", "int64"),
        ("TCA_NETEM_JITTER64", "int64"),
        ("TCA_NETEM_SLOT", "hex"),
        ("TCA_NETEM_SLOT_DIST", "hex"),
        ("TCA_NETEM_PRNG_SEED", "uint64"),
    )

    class netem_loss(nla):
        nla_map = (
            ("NETEM_LOSS_UNSPEC", "none"),
            ("NETEM_LOSS_GI", "gimodel"),
            ("NETEM_LOSS_GE", "gemodel"),
        )

        class gimodel(nla):
            fields = (("p13", "I"), ("p31", "I"), ("p32", "I"), ("p14", "I"), ("p23", "I"))

        class gemodel(nla):
            fields = (("p", "I"), ("r", "I"), ("h", "I"), ("k1", "I"))


class NetemTcMsg(tcmsg):
    """A tcmsg whose netem options use :class:`NetemOptions` (encode and decode)."""

    @staticmethod
    def get_options(self, *argv, **kwarg):
        if self.get_attr("TCA_KIND") == "netem":
            return NetemOptions
        return tcmsg.get_options(self, *argv, **kwarg)


def _decode_options(opts):
    """Kernel netem options -> the spec's vocabulary and units."""
    if opts is None:
        return {}
    corr = opts.get_attr("TCA_NETEM_CORR") or {}
    reorder = opts.get_attr("TCA_NETEM_REORDER") or {}
    corrupt = opts.get_attr("TCA_NETEM_CORRUPT") or {}
    rate = opts.get_attr("TCA_NETEM_RATE") or {}
    rate64 = opts.get_attr("TCA_NETEM_RATE64")
    lat64, jit64 = opts.get_attr("TCA_NETEM_LATENCY64"), opts.get_attr("TCA_NETEM_JITTER64")
    loss = opts.get_attr("TCA_NETEM_LOSS")
    ge = loss.get_attr("NETEM_LOSS_GE") if loss is not None else None
    rate_bytes = rate64 if rate64 is not None else rate.get("rate", 0)
    return {
        "delay": lat64 / 1e6 if lat64 is not None else opts["delay"] / tick_in_usec / 1000,
        "jitter": jit64 / 1e6 if jit64 is not None else opts["jitter"] / tick_in_usec / 1000,
        "delay_corr": _percent(corr.get("delay_corr", 0)),
        "loss": _percent(opts["loss"]),
        "loss_corr": _percent(corr.get("loss_corr", 0)),
        "gemodel": ((_percent(ge["p"]), _percent(ge["r"]), round(100.0 - _percent(ge["h"]), 7),
                     _percent(ge["k1"])) if ge is not None else None),
        "reorder": _percent(reorder.get("prob_reorder", 0)),
        "reorder_corr": _percent(reorder.get("corr_reorder", 0)),
        "gap": opts["gap"],
        "duplicate": _percent(opts["duplicate"]),
        "duplicate_corr": _percent(corr.get("dup_corr", 0)),
        "corrupt": _percent(corrupt.get("prob_corrupt", 0)),
        "corrupt_corr": _percent(corrupt.get("corr_corrupt", 0)),
        "rate": rate_bytes * 8 if rate_bytes else None,
        "limit": opts["limit"],
    }


# ------------------------------------------------------- applying to links

@dataclasses.dataclass(frozen=True)
class Impairment:
    """A netem qdisc this run installed: where, what, and which way it acts."""

    node: str
    intf: str
    peer: str
    spec: NetemSpec

    def sentence(self):
        return (f"netem on {self.intf} delays/drops packets {self.node} sends toward "
                f"{self.peer}: {self.spec}"
                + (" (jitter reorders packets)" if self.spec.jitter and self.spec.rate is None
                   else ""))


# tb -> {(node name, intf name): Impairment}; weak so a finished Testbed is freed.
_ACTIVE = weakref.WeakKeyDictionary()


def _node(tb, node):
    return tb.resolve(node)


def _intf_name(node, intf):
    name = intf if isinstance(intf, str) else intf.name
    if name not in node.intfNames():
        raise ConfigError(f"{node.name} has no interface {name!r} "
                          f"(it has {', '.join(n for n in node.intfNames() if n != 'lo')})")
    return name


def _peer_of(node, ifname):
    intf = node.intf(ifname)
    link = getattr(intf, "link", None)
    if link is None:
        return "?"
    other = link.intf2 if link.intf1 is intf else link.intf1
    return other.node.name


def _ifindex(ipr, node, ifname):
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise ConfigError(f"{node.name}: interface {ifname} does not exist in its namespace")
    return found[0]


def _open(tb, node):
    ipr = tb.iproute(node)
    # Decode this socket's qdisc messages with our class (the map is per socket).
    ipr.marshal.msg_map[RTM_NEWQDISC] = NetemTcMsg
    return ipr


def _root_qdisc(ipr, index):
    query = NetemTcMsg()
    query["index"] = index
    for q in ipr.nlm_request(query, RTM_GETQDISC):
        if q["index"] == index and q["parent"] == TC_H_ROOT:
            return q
    return None


def _tcmsg_for(index, spec=None):
    msg = NetemTcMsg()
    msg["index"] = index
    msg["handle"] = 0
    msg["parent"] = TC_H_ROOT
    if spec is not None:
        msg["attrs"] = [["TCA_KIND", "netem"], ["TCA_OPTIONS", spec.netlink_options()]]
    return msg


def _netem_error(exc, node, ifname, action):
    if isinstance(exc, NetlinkError) and exc.code == errno.ENOENT and action == "add":
        return NetemUnavailableError(
            f"kernel has no sch_netem: cannot add netem on {node.name}:{ifname} "
            f"(run inside User-Mode Linux: tools/uml_run.py -- ...)")
    return WirelabError(f"netem {action} on {node.name}:{ifname} failed: {exc}")


def require_netem():
    """Raise :class:`NetemUnavailableError` unless the running kernel has sch_netem."""
    from wirelab.net.uml import has_sch_netem
    if not has_sch_netem():
        raise NetemUnavailableError(
            f"kernel has no sch_netem ({os.uname().release}): run the netem work inside "
            "User-Mode Linux (tools/uml_run.py -- ...)")


def _offloads_off(node, ifname):
    """TSO/GSO/GRO off, verified: netem must see the packets that go on the wire."""
    with open_ioctl_socket(node) as sock:
        set_offloads(sock, ifname, enabled=False)
        state = get_offloads(sock, ifname)
    on = [k for k, v in state.items() if v]
    if on:
        raise WirelabError(f"{node.name}:{ifname}: could not turn off {', '.join(on)}")
    return state


def apply_netem(tb, node, intf, spec):
    """Install ``spec`` as the root qdisc of ``node``'s ``intf`` (its EGRESS).

    netem on r1-eth0 delays packets r1 sends toward r2, not those it receives.
    Refuses to replace a root qdisc someone else installed. Turns offloads off
    on the interface and checks the kernel holds exactly ``spec`` afterwards.
    Registers the removal with ``tb.add_cleanup``. Returns an :class:`Impairment`.
    """
    if not isinstance(spec, NetemSpec):
        raise ConfigError(f"apply_netem needs a NetemSpec, got {type(spec).__name__}")
    node = _node(tb, node)
    ifname = _intf_name(node, intf)
    active = _ACTIVE.setdefault(tb, {})
    if (node.name, ifname) in active:
        raise ConfigError(f"{node.name}:{ifname} already has netem; use change_netem")
    _offloads_off(node, ifname)
    with _open(tb, node) as ipr:
        index = _ifindex(ipr, node, ifname)
        root = _root_qdisc(ipr, index)
        if root is not None and root["handle"] != 0:
            raise ConfigError(
                f"{node.name}:{ifname} already has a root qdisc {root.get_attr('TCA_KIND')} "
                f"(handle {root['handle'] >> 16:x}:): netem would replace it")
        try:
            ipr.nlm_request(_tcmsg_for(index, spec), RTM_NEWQDISC,
                            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as exc:
            raise _netem_error(exc, node, ifname, "add") from exc
    impairment = Impairment(node.name, ifname, _peer_of(node, ifname), spec)
    active[(node.name, ifname)] = impairment
    tb.add_cleanup(f"netem on {node.name}:{ifname}",
                   functools.partial(_remove_at_teardown, tb, node, ifname))
    _verify(tb, node, ifname, spec)
    return impairment


def change_netem(tb, node, intf, spec):
    """Replace the running netem on ``intf`` by ``spec`` without a gap.

    Counters keep counting. Exception: going to or from a distribution table
    re-creates the qdisc (counters restart), because netem keeps its old table
    when a change message has none and cannot be sent an empty one."""
    node = _node(tb, node)
    ifname = _intf_name(node, intf)
    old = _ACTIVE.get(tb, {}).get((node.name, ifname))
    if old is None:
        raise ConfigError(f"{node.name}:{ifname} has no netem from this run; use apply_netem")
    with _open(tb, node) as ipr:
        index = _ifindex(ipr, node, ifname)
        try:
            if old.spec.distribution != "uniform" and spec.distribution == "uniform":
                ipr.nlm_request(_tcmsg_for(index), RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK)
                ipr.nlm_request(_tcmsg_for(index, spec), RTM_NEWQDISC,
                                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            else:
                ipr.nlm_request(_tcmsg_for(index, spec), RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK)
        except NetlinkError as exc:
            raise _netem_error(exc, node, ifname, "change") from exc
    impairment = dataclasses.replace(old, spec=spec)
    _ACTIVE[tb][(node.name, ifname)] = impairment
    _verify(tb, node, ifname, spec)
    return impairment


def clear_netem(tb, node, intf):
    """Remove this run's netem from ``intf``; the kernel's default qdisc returns.
    Idempotent: a second call (or teardown afterwards) does nothing."""
    node = _node(tb, node)
    ifname = _intf_name(node, intf)
    active = _ACTIVE.get(tb, {})
    if (node.name, ifname) not in active:
        return False
    with _open(tb, node) as ipr:
        index = _ifindex(ipr, node, ifname)
        root = _root_qdisc(ipr, index)
        if root is not None and root.get_attr("TCA_KIND") == "netem":
            try:
                ipr.nlm_request(_tcmsg_for(index), RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK)
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.EINVAL):
                    # still ours: teardown will try again
                    raise _netem_error(exc, node, ifname, "delete") from exc
    # Forgotten only once it is gone, so a failed delete is retried at teardown.
    active.pop((node.name, ifname), None)
    return True


def _remove_at_teardown(tb, node, ifname):
    try:
        clear_netem(tb, node, ifname)
    except OSError:
        pass  # the node's namespace is already gone, and the qdisc with it


def _verify(tb, node, ifname, spec):
    stats = netem_stats(tb, node, ifname)
    if stats["kind"] != "netem":
        raise WirelabError(f"{node.name}:{ifname}: root qdisc is {stats['kind']}, not netem")
    bad = spec.mismatches(stats["options"])
    if bad:
        key, want, got = bad[0]
        raise WirelabError(f"{node.name}:{ifname}: kernel holds {key}={got}, asked for {want}")


def apply_link(tb, link, spec, direction="both"):
    """Impair a link: ``link`` is a Mininet Link or ``(node_a, node_b)``.

    ``direction``: ``'a->b'`` (netem on a's interface: what a sends to b),
    ``'b->a'``, or ``'both'`` (same spec each way; each direction gets its own
    netem, so the RTT grows by twice the delay). Returns the Impairments."""
    if direction not in ("a->b", "b->a", "both"):
        raise ConfigError(f"direction={direction!r}: one of 'a->b', 'b->a', 'both'")
    if isinstance(link, (tuple, list)):
        a, b = (_node(tb, n) for n in link)
        ends = _link_between(tb, a, b)
    else:
        ends = (link.intf1, link.intf2)
    out = []
    todo = {"a->b": [ends[0]], "b->a": [ends[1]], "both": list(ends)}[direction]
    for intf in todo:
        out.append(apply_netem(tb, intf.node, intf.name, spec))
    return out


def _link_between(tb, a, b):
    found = []
    for intf in a.intfList():
        link = getattr(intf, "link", None)
        if link is None:
            continue
        other = link.intf2 if link.intf1 is intf else link.intf1
        if other.node is b:
            found.append((intf, other))
    if not found:
        raise ConfigError(f"no link between {a.name} and {b.name}")
    if len(found) > 1:
        raise ConfigError(f"{len(found)} links between {a.name} and {b.name}: pass the Link")
    return found[0]


def describe(tb):
    """One sentence per active netem of this run, saying which side it acts on."""
    return [imp.sentence() for _, imp in sorted(_ACTIVE.get(tb, {}).items())]


def active(tb):
    """``{(node, intf): Impairment}`` for this run's netem qdiscs."""
    return dict(_ACTIVE.get(tb, {}))


def netem_stats(tb, node, intf):
    """The root qdisc of ``intf`` as the kernel reports it, over netlink.

    Keys: ``kind``, ``handle``, ``options`` (netem only: in the spec's vocabulary
    and units, read back from the kernel), ``packets``, ``bytes``, ``drops``,
    ``overlimits``, ``requeues``, ``backlog_bytes``, ``qlen``. netem exports no
    per-cause counters (duplicated, corrupted, reordered are not counted by the
    kernel): compare ``packets`` with what was sent instead.
    """
    node = _node(tb, node)
    ifname = _intf_name(node, intf)
    with _open(tb, node) as ipr:
        index = _ifindex(ipr, node, ifname)
        root = _root_qdisc(ipr, index)
    if root is None:
        return {"kind": None}
    kind = root.get_attr("TCA_KIND")
    out = {"kind": kind, "handle": f"{root['handle'] >> 16:x}:"}
    stats2 = root.get_attr("TCA_STATS2")
    basic = stats2.get_attr("TCA_STATS_BASIC") if stats2 else None
    queue = stats2.get_attr("TCA_STATS_QUEUE") if stats2 else None
    if basic is None or queue is None:  # old kernels: only struct tc_stats
        s = root.get_attr("TCA_STATS") or {}
        basic = {"bytes": s.get("bytes", 0), "packets": s.get("packets", 0)}
        queue = {"drops": s.get("drop", 0), "overlimits": s.get("overlimits", 0),
                 "requeues": 0, "backlog": s.get("backlog", 0), "qlen": s.get("qlen", 0)}
    out.update(packets=basic["packets"], bytes=basic["bytes"], drops=queue["drops"],
               overlimits=queue["overlimits"], requeues=queue["requeues"],
               backlog_bytes=queue["backlog"], qlen=queue["qlen"])
    if kind == "netem":
        out["options"] = _decode_options(root.get_attr("TCA_OPTIONS"))
    return out
