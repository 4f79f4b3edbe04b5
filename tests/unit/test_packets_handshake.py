"""The handmade TCP client without root: its sender driven by a fake network,
sequence arithmetic at 2**32, the RST guard's rule text and its life cycle
(with a fake command runner), and the command line's one-line errors.

The fake network is an event queue: a data segment reaches a receiver after
``DELAY`` and its ACK comes back after ``DELAY``; a test can drop the N-th
data-carrying transmission (as :class:`~wirelab.impair.faults.DropNthDataSegment`
counts them: retransmissions count), send every ACK twice, delay every other
ACK so that ACKs arrive out of order, or keep its window closed. The receiver
places bytes by the *sequence number* with its own modular arithmetic, so a
segment whose offset and sequence number disagreed would corrupt the bytes.
"""

import hashlib
import heapq
import itertools
import json

import pytest

from wirelab.errors import CommandError, ConfigError, NotRootError
from wirelab.packets import handshake, rstguard
from wirelab.packets.tcpsender import MIN_RTO_S, Sender, seq_add, seq_diff, seq_lt

DELAY = 0.01          # one way; RTT 20 ms, so the RTO is its 200 ms floor
SEG = 1000


class FakeReceiver:
    """Cumulative ACKs, out-of-order segments kept, the window from ``window_at(now)``."""

    def __init__(self, isn, window_at):
        self.base = (isn + 1) % 2**32
        self.window_at = window_at
        self.expected = 0            # offset of the next byte in order
        self.pieces = {}             # offset -> bytes (out of order)
        self.stream = bytearray()
        self.fin_at = None

    def segment(self, seq, payload, fin, now):
        off = (seq - self.base) % 2**32
        if off >= 2**31:             # seq before base: a window probe
            off = -1
        if payload and off >= self.expected:
            self.pieces[off] = payload
        if fin:
            self.fin_at = off + len(payload)
        while self.expected in self.pieces:
            piece = self.pieces.pop(self.expected)
            self.stream += piece
            self.expected += len(piece)
        for start in [o for o in self.pieces if o < self.expected]:
            del self.pieces[start]   # covered by a retransmission
        if self.fin_at is not None and self.expected == self.fin_at:
            self.expected += 1
        return (self.base + self.expected) % 2**32, self.window_at(now)


def simulate(data, isn=12345, window=64000, drop=(), dup_acks=False, reorder_acks=False,
             window_at=None, until=120.0):
    """Run a whole transfer; returns (sender, receiver, sent) where ``sent`` is
    [(time, Segment, right edge the sender had been told)]."""
    window_at = window_at or (lambda now: window)
    sender = Sender(len(data), isn, SEG, window_at(0.0), 0.0)
    receiver = FakeReceiver(isn, window_at)
    events, order = [], itertools.count()
    sent, data_tx, ack_no = [], 0, 0
    edge = window_at(0.0)      # largest right edge (offset) delivered to the sender
    now = 0.0
    while not sender.finished:
        for seg in sender.poll(now):
            sent.append((now, seg, edge))
            if seg.length:
                data_tx += 1
                if data_tx in drop:
                    continue
            heapq.heappush(events, (now + DELAY, next(order), "data", seg))
        pending = [events[0][0]] if events else []
        if sender.deadline() is not None:
            pending.append(sender.deadline())
        assert pending, "sender stalled: nothing in flight and no timer"
        now = min(pending)
        assert now < until, "transfer did not finish"
        while events and events[0][0] <= now:
            _, _, kind, item = heapq.heappop(events)
            if kind == "data":
                payload = data[item.offset:item.offset + item.length]
                ack, win = receiver.segment(item.seq, payload, item.fin, now)
                ack_no += 1
                late = DELAY * 1.5 if reorder_acks and ack_no % 2 else 0.0
                for _ in range(2 if dup_acks else 1):
                    heapq.heappush(events, (now + DELAY + late, next(order), "ack", (ack, win)))
            else:
                ack, win = item
                edge = max(edge, (ack - receiver.base) % 2**32 + win)
                sender.on_ack(ack, win, now)
    return sender, receiver, sent


def payload(n):
    return bytes(i * 7 % 251 for i in range(n))


def retransmitted(sender):
    return [(seg.index, seg.offset, seg.length, seg.reason) for _, seg in sender.retransmissions]


# -- sequence arithmetic ---------------------------------------------------------

def test_sequence_arithmetic_wraps_at_2_32():
    assert seq_add(2**32 - 1, 2) == 1
    assert seq_diff(5, 2**32 - 5) == 10
    assert seq_diff(2**32 - 5, 5) == -10
    assert seq_lt(2**32 - 1, 0) and not seq_lt(0, 2**32 - 1)


def test_transfer_across_the_wrap_delivers_every_byte():
    data = payload(30_000)
    isn = 2**32 - 10_500     # the 11th segment's sequence numbers wrap
    sender, receiver, sent = simulate(data, isn=isn)
    assert bytes(receiver.stream) == data
    seqs = [seg.seq for _, seg, _ in sent if seg.length]
    assert any(s > isn for s in seqs) and any(s < 20_000 for s in seqs)
    fin = [seg for _, seg, _ in sent if seg.fin]
    assert [f.seq for f in fin] == [(isn + 1 + len(data)) % 2**32]
    assert sender.retransmissions == []


# -- loss, duplication, reordering -----------------------------------------------

def test_nothing_lost_nothing_retransmitted_and_rtt_measured():
    data = payload(50_000)
    sender, receiver, sent = simulate(data)
    assert hashlib.sha256(receiver.stream).digest() == hashlib.sha256(data).digest()
    assert sender.retransmissions == []
    assert [seg.index for _, seg, _ in sent if seg.length] == list(range(1, 51))
    assert all(rtt == pytest.approx(2 * DELAY) for _, rtt in sender.rtt_samples)


@pytest.mark.parametrize("k", [1, 3, 25, 48])
def test_one_lost_segment_is_retransmitted_exactly_once_by_three_dupacks(k):
    data = payload(50_000)
    sender, receiver, _ = simulate(data, drop={k})
    assert bytes(receiver.stream) == data
    assert retransmitted(sender) == [(k, (k - 1) * SEG, SEG, "dup_acks")]
    # Karn: no RTT sample timed a retransmitted segment (all are one round trip)
    assert all(rtt == pytest.approx(2 * DELAY) for _, rtt in sender.rtt_samples)


def test_last_segment_lost_is_resent_by_the_timer_at_the_rto_floor():
    data = payload(10_500)   # 11 segments, the last one 500 bytes
    sender, receiver, sent = simulate(data, drop={11})
    assert bytes(receiver.stream) == data
    assert retransmitted(sender) == [(11, 10_000, 500, "rto")]
    first = next(t for t, seg, _ in sent if seg.index == 11)
    again = sender.retransmissions[0][0]
    # the timer restarts on the last new ACK, at most one RTT after the send
    assert MIN_RTO_S <= again - first <= MIN_RTO_S + 2 * DELAY + 1e-9


def test_the_timer_doubles_when_the_retransmission_is_lost_too():
    data = payload(10_500)
    sender, receiver, _ = simulate(data, drop={11, 12})
    assert bytes(receiver.stream) == data
    assert [r[3] for r in retransmitted(sender)] == ["rto", "rto"]
    (t1, _), (t2, _) = sender.retransmissions
    assert t2 - t1 == pytest.approx(2 * MIN_RTO_S)


def test_two_losses_in_one_window_newreno_resends_each_hole_once():
    data = payload(50_000)
    sender, receiver, _ = simulate(data, drop={3, 5})
    assert bytes(receiver.stream) == data
    assert retransmitted(sender) == [(3, 2000, SEG, "dup_acks"), (5, 4000, SEG, "partial_ack")]


def test_duplicated_and_reordered_acks_cause_no_spurious_retransmission():
    data = payload(50_000)
    sender, receiver, _ = simulate(data, dup_acks=True, reorder_acks=True)
    assert bytes(receiver.stream) == data
    assert sender.retransmissions == []


@pytest.mark.parametrize("k", [2, 20])
def test_loss_with_duplicated_and_reordered_acks_retransmits_only_the_lost_segment(k):
    data = payload(50_000)
    sender, receiver, _ = simulate(data, drop={k}, dup_acks=True, reorder_acks=True)
    assert bytes(receiver.stream) == data
    assert [(i, off) for i, off, _, _ in retransmitted(sender)] == [(k, (k - 1) * SEG)]


# -- windows ------------------------------------------------------------------------

@pytest.mark.parametrize("drop", [(), (4,)])
def test_never_sends_beyond_the_advertised_window(drop):
    data = payload(40_000)
    sender, receiver, sent = simulate(data, window=3000, drop=set(drop))
    assert bytes(receiver.stream) == data
    for _, seg, edge in sent:
        if seg.length:
            assert seg.offset + seg.length <= edge, seg
    # and the window was what limited the sender: segments went right up to its edge
    assert sum(seg.offset + seg.length == edge for _, seg, edge in sent if seg.length) >= 10


def test_congestion_window_starts_at_ten_segments():
    sender = Sender(100_000, 0, SEG, 64_000, 0.0)
    first = sender.poll(0.0)
    assert [s.index for s in first] == list(range(1, 11))


def test_zero_window_is_probed_without_data_until_it_opens():
    # The fake receiver never sends a window update by itself (as if it were
    # lost): only the sender's probe can learn that the window opened.
    data = payload(5_000)
    def window_at(now):
        return 0 if now < 0.5 else 64_000
    sender, receiver, sent = simulate(data, window_at=window_at)
    assert bytes(receiver.stream) == data
    probes = [seg for _, seg, _ in sent if seg.reason == "window_probe"]
    assert probes and all(p.length == 0 and p.seq == seq_add(12345, 0) for p in probes)
    assert all(t >= 0.5 for t, seg, _ in sent if seg.length)


# -- the RST guard ------------------------------------------------------------------

FLOW = rstguard.Flow("10.0.1.2", 40001, "10.0.2.2", 5001)


def test_nft_rule_matches_only_the_flows_rsts():
    assert rstguard.nft_rule(FLOW) == (
        "ip saddr 10.0.1.2 ip daddr 10.0.2.2 tcp sport 40001 tcp dport 5001 "
        "tcp flags & rst == rst counter drop")
    assert rstguard.nft_script("wirelab_hs_77", FLOW) == (
        "table inet wirelab_hs_77 {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        "    ip saddr 10.0.1.2 ip daddr 10.0.2.2 tcp sport 40001 tcp dport 5001 "
        "tcp flags & rst == rst counter drop\n"
        "  }\n"
        "}\n")
    assert rstguard.xt_rule(FLOW) == ["-p", "tcp", "-s", "10.0.1.2", "-d", "10.0.2.2", "-m", "tcp",
                                      "--sport", "40001", "--dport", "5001",
                                      "--tcp-flags", "RST", "RST", "-j", "DROP"]
    assert rstguard.guard_name(4242) == "wirelab_hs_4242"
    with pytest.raises(ConfigError):
        rstguard.Flow("::1", 1, "::2", 2)


class FakeKernel:
    """Runs the guard's commands against a set of nft tables / xtables chains."""

    def __init__(self, nft_ok=True, xt_ok=True, sticky=False):
        self.nft_ok, self.xt_ok, self.sticky = nft_ok, xt_ok, sticky
        self.tables, self.chains, self.calls = set(), set(), []

    def __call__(self, argv, input=None):
        self.calls.append(argv)

        class Done:
            stdout = ""
        done = Done()
        if argv[:2] == ["nft", "-f"]:
            if not self.nft_ok:
                raise CommandError(argv, 1, "Error: Could not process rule: Operation not supported")
            self.tables.add(input.split()[2])
        elif argv[:3] == ["nft", "-j", "list"] and argv[3] == "tables":
            done.stdout = json.dumps({"nftables": [{"table": {"family": "inet", "name": t}}
                                                   for t in self.tables]})
        elif argv[:3] == ["nft", "-j", "list"]:
            done.stdout = json.dumps({"nftables": [{"rule": {"expr": [
                {"counter": {"packets": 3, "bytes": 120}}, {"drop": None}]}}]})
        elif argv[:3] == ["nft", "delete", "table"]:
            if not self.sticky:
                self.tables.discard(argv[4])
        elif argv[0] == "iptables-legacy-restore":
            if not self.xt_ok:
                raise CommandError(argv, 2, "iptables-restore v1.8.9 (legacy): can't initialize")
            chain = input.splitlines()[1]
            if chain.startswith(":"):
                self.chains.add(chain[1:].split()[0])
            elif not self.sticky:
                self.chains.discard(chain.split()[-1])
        elif argv[0] == "iptables-legacy-save":
            done.stdout = "".join(f":{c} - [0:0]\n" for c in self.chains)
        elif argv[0] == "iptables-legacy":
            done.stdout = "Chain x\n pkts bytes target\n       2      80 DROP  tcp\n"
        return done


def test_guard_lifecycle_nft_created_counted_deleted_and_checked_gone():
    kernel = FakeKernel()
    guard = rstguard.RstGuard(FLOW, name="wirelab_hs_1", runner=kernel).install()
    assert guard.backend == "nft" and guard.present()
    guard.remove()
    assert kernel.tables == set() and guard.removed and guard.suppressed == 3
    assert kernel.calls[-1] == ["nft", "-j", "list", "tables"]   # the read-back
    guard.remove()   # idempotent: nothing more is run
    assert kernel.calls[-1] == ["nft", "-j", "list", "tables"]


def test_guard_falls_back_to_iptables_legacy_where_nft_has_no_inet_family():
    kernel = FakeKernel(nft_ok=False)
    guard = rstguard.RstGuard(FLOW, name="wirelab_hs_2", runner=kernel).install()
    assert (guard.backend, guard.xt_table) == ("iptables", "raw")
    assert kernel.chains == {"wirelab_hs_2"}
    guard.remove()
    assert kernel.chains == set() and guard.suppressed == 2


def test_guard_unavailable_and_left_behind_are_one_line_errors():
    with pytest.raises(rstguard.RstGuardUnavailable) as exc:
        rstguard.RstGuard(FLOW, runner=FakeKernel(nft_ok=False, xt_ok=False)).install()
    assert "\n" not in str(exc.value) and "Operation not supported" in str(exc.value)
    assert exc.value.exit_code == 3
    guard = rstguard.RstGuard(FLOW, name="wirelab_hs_3", runner=FakeKernel(sticky=True)).install()
    with pytest.raises(rstguard.RstGuardLeft, match="still there"):
        guard.remove()


# -- the command line ---------------------------------------------------------------

def test_command_line_errors_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="one of the arguments --bytes --data is required"):
        handshake.main(["--to", "10.0.2.2", "--port", "5001"])
    with pytest.raises(ConfigError, match="not allowed with"):
        handshake.main(["--to", "10.0.2.2", "--port", "5001", "--bytes", "1", "--data", "x"])
    with pytest.raises(ConfigError, match="an IPv4 address"):
        handshake.main(["--to", "h2", "--port", "5001", "--bytes", "1"])


def test_without_root_it_says_so(monkeypatch):
    monkeypatch.setattr(handshake.os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError) as exc:
        handshake.main(["--to", "10.0.2.2", "--port", "5001", "--bytes", "1"])
    assert exc.value.exit_code == 4
