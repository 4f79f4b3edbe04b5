"""The MapReduce experiment's time rules: each window and deadline derived
from the parameters (the heartbeat interval T, the k missed heartbeats that
make a worker dead, the job's size), each constant with its reason.
"""

import dataclasses

from wirelab.experiment import timers

# A manager checks its workers' heartbeats at least once per interval T (the
# bundled one every T/4, at most 0.5 s): a death is due k*T after the last
# heartbeat the manager received, and is seen at the next check.
CHECK_PERIODS_PER_INTERVAL = 1
# Beyond the rule, what a declaration may lag: the manager's loop wakes from
# a blocking queue read (Python's GIL switch interval 5 ms times a few
# threads), inside UML one host tick more (timers.EVENT_WAKEUP_SLACK_MS), and
# the event is logged after the decision. Measured natively: < 20 ms.
SCHEDULING_SLACK_S = 0.2
# A heartbeat loop sends, then waits T: consecutive heartbeats leave T plus
# the send and the thread's wake-up apart. On a loaded host (a UML guest
# descheduled, two cores shared) that wake-up was seen 0.12 s late at T = 0.5;
# a heartbeat is "missed" only when the gap reaches a second interval.
HEARTBEAT_LATE_INTERVALS = 1

# Deadlines: they stop a run that would never end, and decide nothing but
# "the job finished in time". Generous: in UML Python runs 2-4x slower.
SLOWDOWN = 4
JOB_BASE_S = 5.0            # the manager starts the job, the last reducer's file lands
TASK_S = 1.0                # one task: a Python mapper/reducer started, its files written
PER_MB_S = 4.0              # Python word count and the sort, per MB of input
# Loss delays a message by SYN backoff: 1 s, then 3 s for a second loss.
IMPAIRED_EXTRA_S = 3 * (1 + 2)


def dead_window_s(T, k):
    """[lo, hi]: when, after the last heartbeat captured on the manager's
    interface, a silent worker must be declared dead. Not before k*T (the
    manager received that heartbeat no earlier than the capture saw it; less
    the capture's timestamp resolution); by the first check after k*T plus
    the scheduling slack."""
    lo = k * T - timers.TS_DIFF_MS / 1000
    hi = k * T + T / CHECK_PERIODS_PER_INTERVAL + SCHEDULING_SLACK_S
    return lo, hi


def partition_s(T, k):
    """How long a partition lasts: past the dead window's end, plus one
    interval, so that the manager has declared the worker dead (and acted)
    before it comes back."""
    return dead_window_s(T, k)[1] + T


def heartbeat_gap_limit_s(T, k, impaired):
    """Largest gap allowed between two heartbeats of a live worker seen at the
    manager. Clean: one interval, late by at most one more (none missed).
    Impaired (netem loses some): short of k*T, the gap that would make the
    manager declare a death (k losses in a row have probability loss**k)."""
    return k * T if impaired else T * (1 + HEARTBEAT_LATE_INTERVALS)


def job_deadline_s(kind, nmappers, nreducers, input_bytes, T, k):
    """Seconds from the submission to a complete output, for case ``kind``."""
    work = SLOWDOWN * (JOB_BASE_S + TASK_S * (nmappers + nreducers) + PER_MB_S * input_bytes / 1e6)
    if kind == "impaired":
        work += IMPAIRED_EXTRA_S
    if kind in ("worker_killed", "partitioned"):
        # the death must be seen, then the task runs again
        work += dead_window_s(T, k)[1] + SLOWDOWN * TASK_S
    if kind == "partitioned":
        work += partition_s(T, k)
    return round(work, 3)


def syn_gap_s(n, linear_timeouts=0):
    """Seconds between the (n-1)th and nth transmission of a SYN (n >= 1):
    TCP_TIMEOUT_INIT (1 s), doubled after each retransmission (RFC 6298
    backoff) -- except the first ``linear_timeouts`` ones, which Linux >= 6.7
    repeats at 1 s (net.ipv4.tcp_syn_linear_timeouts, default 4; the
    retransmission timer doubles only once total_rto exceeds it)."""
    return timers.TCP_TIMEOUT_INIT_MS / 1000 * 2 ** max(0, n - 1 - linear_timeouts)


def syn_retransmission_window_ms(n, linear_timeouts=0):
    """[lo, hi] ms for the gap before the nth transmission of a SYN
    (:func:`syn_gap_s`): never earlier than a jiffy before; late by the timer
    wheel's 1/8 and a host wake-up (timers.py)."""
    base = syn_gap_s(n, linear_timeouts) * 1000
    return (base - timers.JIFFY_MAX_MS - timers.TS_DIFF_MS,
            base * (1 + timers.TIMER_WHEEL_LATE_FRACTION) + timers.EVENT_WAKEUP_SLACK_MS + timers.TS_DIFF_MS)


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """The case's job: from the parameters, JSON-able into case.json."""

    kind: str                 # clean, impaired, worker_killed, partitioned
    manager_port: int
    worker_port: int
    nmappers: int
    nreducers: int
    heartbeat_interval: float
    missed_heartbeats: int
    deadline_s: float
    partition_s: float
    loglevel: str = "info"


def job_settings(p, kind, manager_port):
    """A case's :class:`JobSettings` from the experiment's parameters ``p``."""
    T, k = p.interval(), p.missed_heartbeats
    deadline = p.job_timeout or job_deadline_s(kind, p.nmappers, p.nreducers, p.input_bytes, T, k)
    return JobSettings(kind=kind, manager_port=manager_port, worker_port=manager_port + 1,
                       nmappers=p.nmappers, nreducers=p.nreducers, heartbeat_interval=T,
                       missed_heartbeats=k, deadline_s=deadline, partition_s=round(partition_s(T, k), 3))
