"""Statistics for claims about random effects: binomial confidence intervals,
the exact false-alarm probability of a rate check, tail probabilities, and
netem's per-packet model."""

import math

#: z for a two-sided 99.99% interval: each rate check then raises a false alarm
#: about once in 10^4 runs (the exact figure for the sample at hand comes from
#: :func:`false_alarm_probability` and goes into the claim).
Z_9999 = 3.890591886413112


def wilson_interval(k, n, z=Z_9999):
    """Wilson score interval for a binomial proportion: ``k`` successes in ``n``."""
    if n <= 0:
        raise ValueError("wilson_interval: n must be positive")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval: k={k} outside 0..{n}")
    phat = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (phat + z2 / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def false_alarm_probability(p, n, z=Z_9999):
    """P[the Wilson interval of Binomial(n, p) draws misses the true ``p``].

    Exact: the sum of the binomial probabilities of every count whose interval
    excludes ``p``. This is the chance that a rate check fails although netem
    did exactly what it was configured to do."""
    if n <= 0:
        return 0.0
    if p <= 0.0 or p >= 1.0:
        return 0.0
    total = 0.0
    lp, lq = math.log(p), math.log1p(-p)
    lgn = math.lgamma(n + 1)
    for k in range(n + 1):
        lo, hi = wilson_interval(k, n, z)
        if lo <= p <= hi:
            continue
        total += math.exp(lgn - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lp + (n - k) * lq)
    return total


def binomial_below(k, n, p):
    """P[X < k] for X ~ Binomial(n, p): the chance an effect with per-packet
    probability ``p`` shows up fewer than ``k`` times in ``n`` packets."""
    if k <= 0:
        return 0.0
    if n < k:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq, lgn = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return min(1.0, sum(math.exp(lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
                        for i in range(k)))


def netem_expected_rates(loss=0.0, duplicate=0.0):
    """Per-packet probabilities (fractions, not percent) of what netem does.

    netem decides duplication first (a second copy), then loss, which removes
    one copy; a packet vanishes only if it was lost and not duplicated. Whether
    the second copy can be lost again depends on the kernel version (it goes
    through the qdisc a second time in some), so the duplication rate is only
    predicted without loss."""
    return {"dropped": loss * (1 - duplicate),
            "duplicated": duplicate if loss == 0 else None}


def poisson_cdf(k, mu):
    """P[X <= k] for X ~ Poisson(mu)."""
    if k < 0:
        return 0.0
    if mu <= 0:
        return 1.0
    term = total = math.exp(-mu)
    if term == 0.0:   # mu large: sum in logs
        return min(1.0, sum(math.exp(i * math.log(mu) - mu - math.lgamma(i + 1)) for i in range(k + 1)))
    for i in range(1, k + 1):
        term *= mu / i
        total += term
    return min(1.0, total)


def poisson_interval(k, z=Z_9999):
    """Exact (Garwood) two-sided interval for a Poisson mean from ``k`` events:
    the means under which seeing ``k`` or fewer (more) events has probability
    alpha/2 each, alpha the two-sided tail of ``z`` (99.99% by default).
    Conservative for counts less dispersed than Poisson."""
    if k < 0:
        raise ValueError(f"poisson_interval: k={k} must not be negative")
    alpha = math.erfc(z / math.sqrt(2))

    def solve(f, lo, hi):   # f increasing in mu on [lo, hi]: bisect for f = 0
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
        return (lo + hi) / 2
    top = 10.0 * (k + 10)
    lower = 0.0 if k == 0 else solve(lambda mu: (1 - poisson_cdf(k - 1, mu)) - alpha / 2, 0.0, top)
    upper = solve(lambda mu: alpha / 2 - poisson_cdf(k, mu), 0.0, top)
    return lower, upper
