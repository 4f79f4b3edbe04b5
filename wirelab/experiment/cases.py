"""Declared cases and the driver that runs them.

An experiment declares its cases as data: a name (its folder), netem per link
end, targeted faults, where to capture, and the workload's inputs. One driver
runs every case the same way::

    folder <- mkdir
    impairments: tb.apply_netem / tb.install_fault  (handles, owned by the Testbed)
    captures started, each confirmed listening
    workload(case, folder) -> JSON-able record (the experiment's own code)
    captures stopped, nothing lost; counters read; handles removed
    folder/case.json <- CaseRecord: what was asked, what the kernel read back,
                        counters, captures, the workload's record, any error

A case that fails is recorded (``error``) and the next one runs: verify then
states a failed claim with the reason, from ``case.json``. Only an interruption
(Ctrl-C, SIGTERM) stops the sequence, after writing the interrupted case.
"""

import dataclasses
import os
import time
import typing

from wirelab.errors import Interrupted, WirelabError
from wirelab.experiment.evidence import write_json
from wirelab.observe.capture import HEADER_SNAPLEN, Captures


@dataclasses.dataclass(frozen=True)
class LinkNetem:
    """netem on the egress of ``intf`` of ``node``: ``spec`` a NetemSpec or its keywords."""

    node: str
    intf: str
    spec: typing.Any


@dataclasses.dataclass(frozen=True)
class NodeFault:
    """A targeted fault (``wirelab.impair.faults``) installed on ``node``."""

    node: str
    fault: typing.Any


@dataclasses.dataclass(frozen=True)
class CapturePoint:
    node: str
    intf: str
    file: str     # a name ending in .pcap, inside the case's folder


@dataclasses.dataclass(frozen=True)
class Case:
    """One run of the workload under declared conditions."""

    name: str                                   # folder, relative to the results folder
    args: dict = dataclasses.field(default_factory=dict)   # the workload's inputs (JSON-able)
    netem: tuple = ()                           # LinkNetem...
    faults: tuple = ()                          # NodeFault...
    captures: tuple = ()                        # CapturePoint...
    bpf: tuple = ()                             # capture filter, as argv words
    snaplen: int = HEADER_SNAPLEN


@dataclasses.dataclass
class CaseRecord:
    """``case.json``: everything verify may know about a case."""

    name: str
    args: dict
    netem: list          # per handle: spec asked, options the kernel read back, counters
    faults: list         # per handle: description, backend, counters
    captures: list       # per capture: packets, kernel drops, problems
    workload: typing.Any
    error: typing.Any    # None, or {"stage", "type", "message"}
    seconds: float

    def to_dict(self):
        return dataclasses.asdict(self)


def _error(stage, exc):
    return {"stage": stage, "type": type(exc).__name__, "message": str(exc)}


def run_case(tb, case, folder, workload, log=print):
    """Run one case; always write and return its :class:`CaseRecord`."""
    os.makedirs(folder, exist_ok=True)
    record = CaseRecord(case.name, dict(case.args), [], [], [], None, None, 0.0)
    started = time.monotonic()
    handles = []
    stage = "netem"
    try:
        for n in case.netem:
            handles.append(("netem", tb.apply_netem(n.node, n.intf, n.spec)))
        stage = "fault"
        for f in case.faults:
            handles.append(("fault", tb.install_fault(f.node, f.fault)))
        stage = "capture"
        points = [(p.node, p.intf, p.file) for p in case.captures]
        caps = Captures(tb, points, folder, snaplen=case.snaplen, bpf=list(case.bpf) or None)
        try:
            with caps:
                stage = "workload"
                record.workload = workload(case, folder)
                stage = "capture"
        finally:
            record.captures = [dict(r) for r in caps.results]
    except (KeyboardInterrupt, Interrupted):
        record.error = {"stage": stage, "type": "Interrupted", "message": "interrupted"}
        raise
    except (WirelabError, TimeoutError, OSError) as exc:
        record.error = _error(stage, exc)
        log(f"  {case.name}: {stage} FAILED: {exc}")
    finally:
        try:
            for kind, h in handles:
                getattr(record, "netem" if kind == "netem" else "faults").append(h.to_dict())
        finally:
            for _, h in reversed(handles):
                h.remove()
            record.seconds = round(time.monotonic() - started, 3)
            write_json(os.path.join(folder, "case.json"), record)
    return record


def run_cases(exp, tb, cases, workload):
    """Run ``cases`` in order on ``tb``; record them in ``run.json``; return the records."""
    records = []
    for i, case in enumerate(cases, 1):
        exp.log(f"[{i}/{len(cases)}] {case.name}"
                + "".join(f"; netem {n.node}:{n.intf} {n.spec}" for n in case.netem)
                + "".join(f"; fault on {f.node}: {f.fault.describe()}" for f in case.faults))
        exp.record_case(case.name)
        records.append(run_case(tb, case, exp.path(case.name), workload, log=exp.log))
    return records
