"""What theory predicts for heartbeats across netem: the expectations the
``heartbeats`` claims compare measurements with.

* :func:`trials_to_false_dead` / :func:`mttf_fixed_k`: with independent loss
  ``p`` per heartbeat, a fixed-k detector (dead once k consecutive heartbeats
  are missing) first suspects a live chunkserver after a run of k losses: the
  mean number of heartbeats until the first run of k "successes" in Bernoulli
  trials, (1 - p^k) / ((1 - p) p^k) (Feller, vol. 1, XIII.7), times T.
* :func:`heartbeat_outcomes`: per heartbeat, the chance netem (Linux
  net/sched/sch_netem.c, ``netem_enqueue``) loses it, delivers it twice, or
  delivers it behind a later one, from loss / duplicate / reorder / delay.
* :func:`phi_floor_silence`: the shortest silence after which the phi accrual
  detector can suspect, whatever its history: the mean interval is never
  negative and the deviation never below ``min_std``.
"""

import math

from wirelab.apps.detectors import phi_crossing


def trials_to_false_dead(p, k):
    """Mean heartbeats from an arrival until k consecutive ones are lost (inf at p = 0)."""
    if not 0 <= p < 1:
        raise ValueError(f"loss probability {p} outside [0, 1)")
    if p == 0:
        return math.inf
    return (1 - p ** k) / ((1 - p) * p ** k)


def mttf_fixed_k(p, k, interval):
    """Mean time to the first false "dead" of a fixed-k detector, seconds:
    T (1 - p^k) / ((1 - p) p^k)."""
    return interval * trials_to_false_dead(p, k)


def overtakers(delay_ms, interval_ms):
    """How many successors of a delayed heartbeat can overtake it when sent
    without the delay: those sent less than ``delay`` after it."""
    return max(0, math.ceil(delay_ms / interval_ms) - 1)


def heartbeat_outcomes(loss=0.0, duplicate=0.0, reorder=0.0, delay_ms=0.0, interval_ms=100.0):
    """Probabilities (fractions) for one heartbeat through netem without jitter.

    netem_enqueue decides duplication, then loss (a lost duplicated packet
    leaves one copy); the second copy is enqueued at the root again with
    duplication off, so it meets loss and reordering again by itself. Each
    copy that survives is sent at once with probability ``reorder`` (put at
    the head of the queue, gap 1) or after ``delay``. A heartbeat is
    *reordered* at the receiver when every copy of it was delayed and some
    copy of one of the next :func:`overtakers` heartbeats was not.

    Returns ``lost`` (no copy arrives), ``duplicated`` (two arrive),
    ``reordered`` (per heartbeat sent, given ``overtakers`` successors) and
    the pieces: ``all_delayed``, ``has_immediate``, ``overtakers``."""
    l, d, r = loss, duplicate, reorder
    if reorder and not delay_ms:
        raise ValueError("reorder needs a delay (netem reorders by sending some packets without it)")
    lost = (1 - d) * l
    duplicated = d * (1 - l) * (1 - l)
    # the heartbeat arrives and every copy of it was delayed
    all_delayed = (1 - d) * (1 - l) * (1 - r) + d * l * (1 - r) \
        + d * (1 - l) * ((1 - l) * (1 - r) ** 2 + l * (1 - r))
    # at least one copy arrives without the delay
    has_immediate = (1 - d) * (1 - l) * r + d * l * r \
        + d * (1 - l) * (1 - (1 - r) * (1 - (1 - l) * r))
    m = overtakers(delay_ms, interval_ms) if delay_ms else 0
    reordered = all_delayed * (1 - (1 - has_immediate) ** m) if r else 0.0
    return {"lost": lost, "duplicated": duplicated, "reordered": reordered,
            "all_delayed": all_delayed, "has_immediate": has_immediate, "overtakers": m}


def phi_floor_silence(threshold, min_std, acceptable_pause, cdf="normal"):
    """The least silence (s) at which phi can reach ``threshold``: mean >= pause
    (intervals are not negative), deviation >= ``min_std``, and the crossing
    grows with both."""
    return phi_crossing(threshold, acceptable_pause, min_std, cdf)


def phi_silence(threshold, mean, std, cdf="normal"):
    """The silence after the last heartbeat at which phi reaches ``threshold``
    for these statistics (mean already holding the acceptable pause)."""
    return phi_crossing(threshold, mean, std, cdf)
