"""Failure detectors: pure objects fed heartbeat times, asked at any time.

Both take times in seconds on one clock the caller chooses (the kernel's
receive stamps' wall clock in the main server, a fake one in tests); neither
reads a clock itself.

* :class:`FixedTimeoutDetector` -- "dead after k missed intervals", as GFS's
  master treats a chunkserver whose HeartBeat messages stop: suspected once
  ``k * interval + grace`` seconds pass after the last heartbeat. ``grace``
  is the slack for the k-th heartbeat's own arrival jitter: with ``grace = 0``
  the deadline falls exactly on the due time of heartbeat ``last + k`` and a
  coin toss (which comes first, the timer or that datagram) would decide; the
  main server uses ``interval / 2``, so the detector fires exactly when ``k``
  consecutive heartbeats are missing.
* :class:`PhiAccrualDetector` -- Hayashibara et al., "The phi accrual failure
  detector" (SRDS 2004), with Akka's choices
  (akka/remote/PhiAccrualFailureDetector.scala): the inter-arrival times are
  a normal distribution whose mean and standard deviation come from the last
  ``max_sample_size`` intervals; ``phi(now) = -log10(1 - CDF(now - last))``
  with the mean raised by ``acceptable_pause`` and the deviation at least
  ``min_std``; suspected when ``phi >= threshold``. The first heartbeat seeds
  the history with ``first_estimate +- first_estimate / 4``, and the
  interval ending a suspicion is not added (a long pause would skew the
  statistics). Akka evaluates the normal CDF with a logistic approximation
  (Bowling et al. 2009); here it is exact (``erfc``) unless ``cdf="logistic"``:
  in the tail the approximation is pessimistic, e.g. at 5.6 standard
  deviations it gives phi 9.3 where the exact value is 7.97.
"""

import collections
import math

FIXED, PHI = "fixed_k", "phi"


class FixedTimeoutDetector:
    """Dead once ``k * interval + grace`` seconds pass without a heartbeat."""

    name = FIXED

    def __init__(self, k, interval, grace=0.0):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k={k!r}: a whole number of intervals >= 1")
        if not interval > 0:
            raise ValueError(f"interval={interval!r}: must be positive")
        if not grace >= 0:
            raise ValueError(f"grace={grace!r}: must not be negative")
        self.k, self.interval, self.grace = k, float(interval), float(grace)
        self.last = None

    @property
    def timeout(self):
        return self.k * self.interval + self.grace

    def heartbeat(self, now):
        self.last = now

    def is_available(self, now):
        """True until the timeout has passed (dead *at* ``last + timeout``);
        True before the first heartbeat: nothing is monitored yet."""
        return self.last is None or now - self.last < self.timeout

    def deadline(self):
        """When the detector will suspect, if no heartbeat comes (None: not monitoring)."""
        return None if self.last is None else self.last + self.timeout

    def state(self):
        return {"last": self.last, "timeout": self.timeout}


class HeartbeatHistory:
    """The last ``max_size`` inter-arrival intervals, with running sums (Akka's)."""

    def __init__(self, max_size):
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_sample_size={max_size!r}: at least 1")
        self.intervals = collections.deque(maxlen=max_size)
        self.total = 0.0
        self.squares = 0.0

    def add(self, interval):
        if len(self.intervals) == self.intervals.maxlen:
            old = self.intervals[0]
            self.total -= old
            self.squares -= old * old
        self.intervals.append(interval)
        self.total += interval
        self.squares += interval * interval

    def __len__(self):
        return len(self.intervals)

    @property
    def mean(self):
        return self.total / len(self.intervals)

    @property
    def std(self):
        """Population standard deviation (Akka's: mean of squares - square of mean)."""
        return math.sqrt(max(0.0, self.squares / len(self.intervals) - self.mean ** 2))


def normal_tail(y):
    """1 - CDF of the standard normal at ``y``, exact in the far tail (erfc)."""
    return 0.5 * math.erfc(y / math.sqrt(2))


def logistic_tail(y):
    """Akka's approximation of the same (Bowling et al. 2009, max error 1.4e-4 in the CDF)."""
    z = y * (1.5976 + 0.070566 * y * y)
    if z >= 0:   # e^-z / (1 + e^-z), written so that neither side overflows
        e = math.exp(-z)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(z))


def phi_value(elapsed, mean, std, cdf="normal"):
    """-log10(1 - CDF(elapsed)) for a normal(mean, std); inf when the tail underflows."""
    y = (elapsed - mean) / std
    tail = (normal_tail if cdf == "normal" else logistic_tail)(y)
    return math.inf if tail <= 0.0 else -math.log10(tail)


def phi_crossing(threshold, mean, std, cdf="normal"):
    """The silence (seconds after the last heartbeat) at which phi reaches ``threshold``."""
    lo, hi = mean - 40 * std, mean + 40 * std
    for _ in range(200):   # bisection: phi_value is increasing in ``elapsed``
        mid = (lo + hi) / 2
        if phi_value(mid, mean, std, cdf) >= threshold:
            hi = mid
        else:
            lo = mid
    return hi


class PhiAccrualDetector:
    """Phi accrual failure detector with Akka's parameters and rules (seconds)."""

    name = PHI

    def __init__(self, threshold=8.0, max_sample_size=1000, min_std=0.1, acceptable_pause=0.0,
                 first_estimate=1.0, cdf="normal"):
        if not threshold > 0:
            raise ValueError(f"threshold={threshold!r}: must be positive")
        if not min_std > 0:
            raise ValueError(f"min_std={min_std!r}: must be positive")
        if not acceptable_pause >= 0:
            raise ValueError(f"acceptable_pause={acceptable_pause!r}: must not be negative")
        if not first_estimate > 0:
            raise ValueError(f"first_estimate={first_estimate!r}: must be positive")
        if cdf not in ("normal", "logistic"):
            raise ValueError(f"cdf={cdf!r}: 'normal' (exact) or 'logistic' (Akka's approximation)")
        self.threshold, self.min_std = float(threshold), float(min_std)
        self.acceptable_pause, self.first_estimate = float(acceptable_pause), float(first_estimate)
        self.cdf = cdf
        self.history = HeartbeatHistory(max_sample_size)
        self.last = None

    def heartbeat(self, now):
        if self.last is None:
            # Akka's firstHeartbeat: two samples around the estimate, std = mean / 4.
            std = self.first_estimate / 4
            self.history.add(self.first_estimate - std)
            self.history.add(self.first_estimate + std)
        elif self.is_available(now):
            # The interval that ends a suspicion is not a sample (Akka: "a long
            # pause will skew the stats").
            self.history.add(now - self.last)
        self.last = now

    def mean(self):
        return self.history.mean + self.acceptable_pause

    def std(self):
        return max(self.history.std, self.min_std)

    def phi(self, now):
        if self.last is None:
            return 0.0
        return phi_value(now - self.last, self.mean(), self.std(), self.cdf)

    def is_available(self, now):
        return self.phi(now) < self.threshold

    def deadline(self):
        """When phi will reach the threshold, if no heartbeat comes (None: not monitoring)."""
        if self.last is None:
            return None
        return self.last + phi_crossing(self.threshold, self.mean(), self.std(), self.cdf)

    def state(self):
        return {"last": self.last, "mean": self.mean() if self.last is not None else None,
                "std": self.std() if self.last is not None else None, "samples": len(self.history)}
