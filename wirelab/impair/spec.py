"""What one direction of a link should suffer: :class:`NetemSpec`, validated.

A :class:`NetemSpec` is data: frozen, validated on construction (every impossible
value is a one-line :class:`~wirelab.errors.ConfigError` before anything in the
kernel changes), parsed from ``"delay=20ms jitter=5ms loss=1%"`` or keywords, and
printed tc-style by ``str()``. Applying it is :meth:`Testbed.apply_netem
<wirelab.net.testbed.Testbed.apply_netem>` (see :mod:`wirelab.impair.qdisc`).

Design decisions (each also stated where it is enforced):

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
import functools
import math
import re

from wirelab.errors import ConfigError
from wirelab.impair.distributions import DISTRIBUTIONS, dist_bounds
from wirelab.impair.netlink import MAX_DELAY_MS, U32_MAX, encode_options
from wirelab.impair.units import (format_number, format_rate, parse_count, parse_percent,
                                  parse_rate_bps, parse_time_ms)

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
            need(v >= 0, f"{key}={format_number(v)}ms: must not be negative")
            need(v <= MAX_DELAY_MS, f"{key}={format_number(v)}ms: netem's 32-bit tick field holds at most "
                                    f"{MAX_DELAY_MS / 1000:.0f}s")
        for key in ("delay_corr", "loss", "loss_corr", "reorder", "reorder_corr", "duplicate",
                    "duplicate_corr", "corrupt", "corrupt_corr"):
            v = getattr(self, key)
            need(0 <= v <= 100, f"{key}={format_number(v)}%: a probability must be between 0% and 100%")
        if self.gemodel is not None:
            for name, v in zip(("p", "r", "1-h", "1-k"), self.gemodel):
                need(0 <= v <= 100, f"gemodel {name}={format_number(v)}%: must be between 0% and 100%")
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
             f"reorder={format_number(self.reorder)}% needs a delay: netem reorders by sending some "
             "packets without the delay")
        need(self.gap >= 0, f"gap={self.gap}: must not be negative")
        need(self.gap == 0 or self.reorder > 0, f"gap={self.gap} needs reorder")
        need(self.reorder_corr == 0 or self.reorder > 0, "reorder_corr needs reorder")
        if self.jitter > 0:
            low, high = dist_bounds(self.distribution)
            shortest = self.delay + low * self.jitter
            need(shortest >= -1e-9,
                 f"jitter={format_number(self.jitter)}ms with delay={format_number(self.delay)}ms and "
                 f"distribution={self.distribution}: the shortest delay would be "
                 f"{format_number(shortest)}ms; the kernel clamps it to 0 and the distribution is lost "
                 f"(largest jitter for this delay: {format_number(self.delay / -low)}ms)")
            need(self.delay + high * self.jitter <= MAX_DELAY_MS,
                 f"delay+jitter tail exceeds {MAX_DELAY_MS / 1000:.0f}s")
        if self.rate is not None:
            need(self.rate >= 8, f"rate={self.rate}bit/s: at least 8bit (1 byte/s)")
            need(self.rate // 8 < 2**64, f"rate={self.rate}bit/s: too large")
        if self.limit is not None:
            need(self.limit >= 1, f"limit={self.limit}: at least 1 packet")
            need(self.limit <= U32_MAX, f"limit={self.limit}: netem's limit is 32-bit")

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
        return self.delay + dist_bounds(self.distribution)[1] * self.jitter

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
            parts += ["delay", f"{format_number(self.delay)}ms"]
            if self.jitter:
                parts.append(f"{format_number(self.jitter)}ms")
                if self.delay_corr:
                    parts.append(f"{format_number(self.delay_corr)}%")
                if self.distribution != "uniform":
                    parts += ["distribution", self.distribution]
        if self.gemodel is not None:
            parts += ["loss", "gemodel"] + [f"{format_number(v)}%" for v in self.gemodel]
        elif self.loss:
            parts += ["loss", f"{format_number(self.loss)}%"]
            if self.loss_corr:
                parts.append(f"{format_number(self.loss_corr)}%")
        for key in ("duplicate", "reorder", "corrupt"):
            value = getattr(self, key)
            if value:
                parts += [key, f"{format_number(value)}%"]
                corr = getattr(self, f"{key}_corr")
                if corr:
                    parts.append(f"{format_number(corr)}%")
                if key == "reorder" and self.gap:
                    parts += ["gap", str(self.gap)]
        if self.rate is not None:
            parts += ["rate", format_rate(self.rate)]
        parts += ["limit", str(self.effective_limit)]
        return " ".join(parts)

    # -- the kernel's view
    def netlink_options(self):
        """TCA_OPTIONS for RTM_NEWQDISC (see :func:`wirelab.impair.netlink.encode_options`)."""
        return encode_options(self)

    def expected_readback(self):
        """What the kernel should read back (:meth:`NetemHandle.readback`) for this spec."""
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
