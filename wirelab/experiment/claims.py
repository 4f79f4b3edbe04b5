"""Claims: what an experiment states, with the measured value, the expectation,
the tolerance and the evidence; and the kinds of claim every experiment makes,
written once.

* :func:`rate_claim` -- a measured rate against a configured probability, with a
  99.99% Wilson interval and the exact chance of a false alarm;
* :func:`window_claim` -- a value inside a window derived from the parameters;
* :func:`captures_complete` -- tcpdump dropped nothing and the files parse;
* :func:`required_or_not_exercised` -- an effect the parameters make near-certain
  must be seen; a rarer one is tested only if it happened, and says so;
* :class:`Tally` -- one check over many pairs (or cases), one claim per check.
"""

import dataclasses
import json
import typing

from wirelab.experiment import stats

# Every "required" claim (an effect the parameters make near-certain) may fail by
# chance at most this often; the Wilson intervals' budget too.
FALSE_ALARM_BUDGET = 1e-4


@dataclasses.dataclass
class Claim:
    """One statement an experiment makes, with the evidence for it."""

    name: str
    ok: bool
    measured: typing.Any = None
    expected: typing.Any = None
    tolerance: typing.Any = None
    evidence: str = ""

    def line(self):
        mark = "PASS" if self.ok else "FAIL"
        parts = [f"[{mark}] {self.name}"]
        for key in ("measured", "expected", "tolerance"):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key}={short(value)}")
        return "  ".join(parts)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{f.name: d.get(f.name) for f in dataclasses.fields(cls)})


def short(value, limit=60):
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rate_claim(title, k, n, p, evidence, missing="no sample"):
    """``k`` events in ``n`` trials against the configured probability ``p``.

    With ``p == 0`` the claim is exact (``k == 0``). Otherwise it holds when
    ``p`` lies in the 99.99% Wilson interval of ``k/n``; the tolerance states
    the exact probability that a correct system fails it. Without trials the
    claim fails and says ``missing``. Returns (claim, figures or None)."""
    if n == 0:
        return Claim(title, False, measured=missing, expected=f"{100 * p:.2f}%", evidence=evidence), None
    lo, hi = stats.wilson_interval(k, n)
    fa = stats.false_alarm_probability(p, n) if 0 < p < 1 else 0.0
    figures = {"configured": p, "measured": k / n, "k": k, "n": n,
               "wilson_99.99": [lo, hi], "false_alarm_probability": fa}
    return Claim(title, (lo <= p <= hi) if p > 0 else k == 0,
                 measured=f"{k}/{n} = {100 * k / n:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]",
                 expected=f"{100 * p:.2f}%",
                 tolerance=f"99.99% Wilson; false alarm {fa:.1e}" if p > 0 else "none: 0 exactly",
                 evidence=evidence), figures


def window_claim(title, value, window, expected, why, evidence, unit="ms", fmt=".3f"):
    """``value`` inside ``window`` = (lo, hi); ``why`` says where the window
    comes from. A missing value or window fails, naming which."""
    ok = value is not None and window is not None and window[0] <= value <= window[1]
    if window is None:
        tolerance = f"no window: {why}"
    else:
        tolerance = f"[{window[0]:{fmt}}, {window[1]:{fmt}}] {unit}: {why}"
    return Claim(title, ok, measured=value if value is not None else "not measured",
                 expected=expected, tolerance=tolerance, evidence=evidence)


def capture_problems(captures):
    """One line per capture that is not complete (tcpdump's counters, file check)."""
    out = []
    for c in captures:
        if c.get("problems") or c.get("dropped_by_kernel") or c.get("dropped_by_interface"):
            why = "; ".join(c.get("problems") or []) or (
                f"{c.get('dropped_by_kernel') or 0} dropped by kernel, "
                f"{c.get('dropped_by_interface') or 0} by interface")
            out.append(f"{c['name']}: {why}")
    return out


def captures_complete(title, captures, expected_count, evidence="tcpdump exit counters"):
    """tcpdump dropped nothing, every capture file parses, all were taken."""
    problems = capture_problems(captures)
    if len(captures) != expected_count:
        problems.append(f"{len(captures)} captures of {expected_count}")
    return Claim(title, not problems,
                 measured=problems or {c["name"]: c.get("packets") for c in captures},
                 expected="0 dropped by kernel, files parse", evidence=evidence)


def required_or_not_exercised(title, *, happened, ok_if_happened, p_miss, figures,
                              expected, evidence, missing=None, why="", missed="did not happen"):
    """An effect the parameters make likely.

    ``happened``: the effect's precondition occurred (e.g. >= 3 drops);
    ``ok_if_happened``: then what must hold; ``p_miss``: the probability, by the
    parameters, that it does not occur (None: unknown). Required when
    ``p_miss < FALSE_ALARM_BUDGET``: missing it then fails. ``missing``: a
    reason the evidence is absent (fails the claim); ``missed``: what not
    happening means, in the claim's words."""
    required = p_miss is not None and p_miss < FALSE_ALARM_BUDGET
    if missing:
        ok, measured = False, missing
    elif happened:
        ok, measured = ok_if_happened, figures
    elif required:
        ok, measured = False, {**figures, "cause": f"{missed}: chance {p_miss:.1e} by the parameters"}
    else:
        chance = "unknown" if p_miss is None else f"{p_miss:.2f}"
        ok, measured = True, {**figures, "not exercised": f"P[not happening] = {chance} by the parameters"}
    return Claim(title, ok, measured=measured, expected=expected,
                 tolerance=f"{'required' if required else 'not required'} by the parameters"
                           + (f" ({why})" if why else ""),
                 evidence=evidence)


class Tally:
    """One check applied to many items (pairs, routers, cases): count the
    passes, keep the first failures, and state one claim per check."""

    def __init__(self):
        self.counts = {}
        self.failures = {}

    def check(self, key, ok, item, detail=""):
        n_ok, n = self.counts.get(key, (0, 0))
        self.counts[key] = (n_ok + bool(ok), n + 1)
        if not ok:
            self.failures.setdefault(key, []).append(f"{item}: {detail}" if detail else str(item))
        return ok

    def claim(self, key, title, evidence, unit="pairs"):
        n_ok, n = self.counts.get(key, (0, 0))
        bad = self.failures.get(key, [])
        return Claim(title, n > 0 and n_ok == n, measured=f"{n_ok}/{n} {unit}", expected=f"{n}/{n}",
                     tolerance=0, evidence=evidence + (f"; failures: {bad[:3]}" if bad else ""))

    def summary(self):
        return {k: list(v) for k, v in self.counts.items()}
