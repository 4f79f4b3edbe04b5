"""Loss, duplication and reordering, measured at the application from sequence numbers.

A chunkserver numbers its heartbeats 0, 1, 2, ...; the receiver sees some of
them, some twice, some late. Per arrival (:class:`SequenceTracker`, used live
by the main server):

* ``fresh``: a sequence number above every one seen before -- news;
* ``late``: first arrival of a number below the highest seen before -- it was
  overtaken (reordered); counted once per heartbeat;
* ``duplicate``: a number that has arrived before.

Over a whole run (:func:`analyse`, used by verify on the logs): which sent
heartbeats never arrived, the maximal runs of consecutive missing numbers (a
fixed-k detector suspects exactly after a run of k), duplicates and
reorderings. Pure functions over lists: tested on crafted sequences.
"""

FRESH, LATE, DUPLICATE = "fresh", "late", "duplicate"


class SequenceTracker:
    """Classify each arrival of one sender's sequence numbers."""

    def __init__(self):
        self.seen = set()
        self.highest = None
        self.counts = {FRESH: 0, LATE: 0, DUPLICATE: 0}

    def classify(self, seq):
        if seq in self.seen:
            kind = DUPLICATE
        else:
            self.seen.add(seq)
            if self.highest is None or seq > self.highest:
                self.highest, kind = seq, FRESH
            else:
                kind = LATE
        self.counts[kind] += 1
        return kind


def missing_runs(missing):
    """Maximal runs of consecutive numbers in ``missing`` (sorted), as [first, length]."""
    runs = []
    for seq in missing:
        if runs and runs[-1][0] + runs[-1][1] == seq:
            runs[-1][1] += 1
        else:
            runs.append([seq, 1])
    return runs


def analyse(arrivals, sent):
    """``arrivals``: sequence numbers in arrival order; ``sent``: the numbers
    that left the sender (an int n means 0..n-1).

    Returns counts and details: ``received`` (arrivals), ``unique``, ``lost``
    (sent, never arrived), ``duplicates`` (arrivals beyond the first),
    ``reordered`` (first arrivals below the highest number seen before),
    ``unexpected`` (numbers never sent), ``loss_runs`` ([first, length], in
    number order), ``copies`` (number -> arrivals) and ``reordered_seqs``."""
    sent_set = set(range(sent)) if isinstance(sent, int) else set(sent)
    tracker = SequenceTracker()
    copies, reordered = {}, []
    for seq in arrivals:
        if tracker.classify(seq) == LATE:
            reordered.append(seq)
        copies[seq] = copies.get(seq, 0) + 1
    lost = sorted(sent_set - set(copies))
    return {
        "sent": len(sent_set), "received": len(arrivals), "unique": len(copies),
        "lost": len(lost), "duplicates": tracker.counts[DUPLICATE], "reordered": len(reordered),
        "unexpected": sorted(set(copies) - sent_set), "lost_seqs": lost,
        "loss_runs": missing_runs(lost), "reordered_seqs": reordered,
        "copies": copies,
    }


def runs_at_least(runs, k):
    """How many runs are at least ``k`` long."""
    return sum(1 for _, n in runs if n >= k)
