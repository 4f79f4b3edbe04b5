"""The kernel's timer model: what a capture can tell about time, netem's
hrtimer, and TCP's retransmission timers -- each constant with the kernel
header or function it comes from. Tolerances of time claims are built here.
"""

# tcpdump writes classic pcap: microsecond timestamps. A difference of two
# timestamps (a one-way delay, an RTT, a retransmission interval) is therefore
# uncertain by up to two of these.
CAPTURE_TS_RESOLUTION_MS = 0.001
TS_DIFF_MS = 2 * CAPTURE_TS_RESOLUTION_MS
# netem holds each packet until now + delay (TCA_NETEM_LATENCY64: nanoseconds)
# and releases it from an hrtimer, which never fires early. So a one-way delay
# is never below the configured delay; above it by the link's own transit time
# (measured: the "baseline" transfer, no impairment, same load) plus the
# wake-up latency of that hrtimer. In a UML guest a timer is a host signal to
# the guest process, delivered once the host schedules it: at most about one
# host scheduler tick (CONFIG_HZ >= 100, so 10 ms) on a busy host; measured here
# on an idle host, median one-way delays sat 0.03-0.06 ms above d + baseline,
# so a median is allowed 1 ms.
MEDIAN_WAKEUP_SLACK_MS = 1.0     # for a median: the typical wake-up
EVENT_WAKEUP_SLACK_MS = 10.0     # for one timer event: the worst, one host tick
# TCP's timers are jiffies timers (mod_timer). One armed at a random moment
# inside a jiffy can expire up to one jiffy early; every kernel config has
# CONFIG_HZ >= 100, so a jiffy is at most 10 ms.
JIFFY_MAX_MS = 10.0
# The timer wheel (kernel/time/timer.c, LVL_CLK_SHIFT = 3) rounds an expiry up
# to its level's granularity, at most 1/8 of the timeout: a 1 s timer may run
# up to 125 ms late (at CONFIG_HZ=100: 8 jiffies on level 1), never early.
TIMER_WHEEL_LATE_FRACTION = 1 / 8
# include/net/tcp.h TCP_TIMEOUT_INIT (1*HZ, RFC 6298 sec. 2.1): the first
# retransmission of an unanswered SYN-ACK (reqsk timer) or SYN comes after 1 s;
# the next would come 2 s later (exponential backoff), at 3 s.
TCP_TIMEOUT_INIT_MS = 1000.0
# include/net/tcp.h TCP_RTO_MIN (HZ/5): the RTO is srtt + rttvar with rttvar
# (4 x mean deviation) at least TCP_RTO_MIN (tcp_set_rto / __tcp_set_rto).
TCP_RTO_MIN_MS = 200.0

# net/ipv4/tcp_output.c tcp_schedule_loss_probe: the tail loss probe fires
# 2*srtt after the last transmission or ACK, + TCP_RTO_MIN when one packet is
# in flight (+ TCP_TIMEOUT_MIN, 2 jiffies, otherwise), capped at the RTO.
TLP_SRTT_FACTOR = 2


def owd_window_ms(delay_ms, baseline_owd):
    """[lo, hi] for the median one-way delay across netem's ``delay_ms``.

    ``baseline_owd``: one-way delay quantiles (ms) of the same link with no
    impairment, at the same load (the "baseline" transfer). netem never sends
    early, so the floor is the delay itself (less the timestamps' resolution);
    above it come the link's own transit (the baseline's 90th percentile) and
    the watchdog hrtimer's typical wake-up latency.
    """
    if not baseline_owd:
        return None
    return (delay_ms - TS_DIFF_MS,
            delay_ms + baseline_owd["p90"] + MEDIAN_WAKEUP_SLACK_MS + TS_DIFF_MS)


def rto_max_ms(rtt):
    """Largest RTO Linux can compute from these RTT samples (ms): srtt + rttvar,
    rttvar = max(4 x mean deviation, TCP_RTO_MIN); srtt <= max RTT and a mean
    deviation <= max - min RTT."""
    return rtt["max"] + max(TCP_RTO_MIN_MS, 4 * (rtt["max"] - rtt["min"]))


def retransmission_window_ms(kind, rtt):
    """[lo, hi] ms between a dropped packet and its retransmission, both seen
    at one capture point, from the kernel's constants and the RTT samples
    (``rtt``: min/max ms, from the same capture).

    * ``synack``: the request socket's timer (TCP_TIMEOUT_INIT), or the
      client's SYN retransmission after the same 1 s, which the server answers
      at once (one more RTT): never earlier than a jiffy before 1 s; at most
      the timer wheel's lateness, an RTT and a host wake-up after it. The
      second retransmission would come at 3 s.
    * ``fin``: nothing follows a FIN, so no duplicate ACK can reveal its loss:
      a timer must, the tail loss probe (>= 2 srtt >= 2 min RTT) or the RTO.
      The timer is re-armed by the last ACK (<= max RTT after the FIN) and the
      PTO is capped at the RTO: at most max RTT + the largest RTO, late by the
      wheel and a wake-up.
    * ``nth``: a segment mid-stream: duplicate ACKs (or RACK) can reveal the
      loss one RTT after it, at the earliest; the RTO is the latest, as above.
    """
    late = rtt["max"] + rto_max_ms(rtt) * (1 + TIMER_WHEEL_LATE_FRACTION) + EVENT_WAKEUP_SLACK_MS
    if kind == "synack":
        return (TCP_TIMEOUT_INIT_MS - JIFFY_MAX_MS - TS_DIFF_MS,
                TCP_TIMEOUT_INIT_MS * (1 + TIMER_WHEEL_LATE_FRACTION) + rtt["max"]
                + EVENT_WAKEUP_SLACK_MS + TS_DIFF_MS)
    if kind == "fin":
        return TLP_SRTT_FACTOR * rtt["min"] - TS_DIFF_MS, late + TS_DIFF_MS
    if kind == "nth":
        return rtt["min"] - TS_DIFF_MS, late + TS_DIFF_MS
    raise ValueError(f"retransmission_window_ms: unknown kind {kind!r}")


# One allowance for the forwarding and the ICMP answer themselves (routers and
# the destination run in softirq, no timer): the UML guest may be descheduled
# by the host once meanwhile, at most one host tick (EVENT_WAKEUP_SLACK_MS).
FORWARDING_STALLS = 1


def netem_rtt_window_ms(delay_ms, netem_traversals):
    """[lo, hi] for the least RTT across netem delays summing ``delay_ms`` one
    way: twice the delay (netem never sends early; less the capture's timestamp
    resolution), plus one host tick per netem qdisc the packet and its answer
    cross (its hrtimer's worst wake-up in UML) and FORWARDING_STALLS more for
    the forwarding."""
    floor = 2 * delay_ms
    return (floor - TS_DIFF_MS,
            floor + (netem_traversals + FORWARDING_STALLS) * EVENT_WAKEUP_SLACK_MS + TS_DIFF_MS)
