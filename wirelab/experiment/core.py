"""The experiment framework: setup -> run -> teardown -> verify -> plot, with evidence.

An experiment subclasses :class:`Experiment` and gives

* ``Params``: a frozen, validated dataclass (its command line is generated);
* ``setup()``: build the network (``self.stack`` owns it) and ``record()``
  what verify must know about it (addresses, interfaces, offloads);
* ``run()``: usually ``run_cases(self, tb, self.cases(), self.workload)``:
  declared :class:`~wirelab.experiment.cases.Case` objects and a workload;
* ``verify(ev)`` and ``plot(ev)``: class methods, pure functions of the
  results folder (:class:`~wirelab.experiment.evidence.Evidence`), so that
  ``wirelab verify DIR`` checks an old folder again without root and prints
  the same claims.

Each run writes ``results/<experiment>/<UTC time>/``: ``params.json``,
``run.json``, one folder per case (``case.json``, pcaps, logs),
``metrics.json`` (status, claims and the figures verify derived) and plots.
"""

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import sys
import time
import traceback
import typing

from wirelab.errors import ConfigError, Interrupted, VerificationError, WirelabError
from wirelab.experiment.claims import Claim, short
from wirelab.experiment.evidence import Evidence, EvidenceError, write_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS_ROOT = os.path.join(REPO, "results")


def utc_stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def new_results_dir(parent, stamp=None):
    """Create and return ``parent/<UTC time>`` (``-2``, ``-3``... appended when two
    runs start in the same second, so no run ever writes into another's folder)."""
    stamp = stamp or utc_stamp()
    os.makedirs(parent, exist_ok=True)
    for n in range(1, 1000):
        path = os.path.join(parent, stamp if n == 1 else f"{stamp}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: too many results folders named {stamp}")


class Experiment:
    """Base class. Subclasses set ``name``, ``Params`` and the steps."""

    name = "experiment"
    Params = None
    needs_netem = False      # run inside User-Mode Linux when the kernel lacks sch_netem
    description = ""

    @classmethod
    def needs_netem_for(cls, params):
        """Whether this run (with these params) needs sch_netem; default: the class's say."""
        return cls.needs_netem

    def __init__(self, params, out_dir=None, log=None):
        self.params = params
        self.out_dir = out_dir or new_results_dir(os.path.join(RESULTS_ROOT, self.name))
        self.log = log or (lambda msg: print(f"[{self.name}] {msg}", flush=True))
        self.claims = []
        self.stack = contextlib.ExitStack()
        self._run_record = {"cases": []}

    def path(self, *parts):
        return os.path.join(self.out_dir, *parts)

    # -- what the run records for verify (run.json) -----------------------------
    def record(self, **items):
        """Add run-level evidence (JSON-able) to ``run.json``, written at once."""
        self._run_record.update(items)
        write_json(self.path("run.json"), self._run_record)

    def record_case(self, name):
        self._run_record["cases"].append(name)
        write_json(self.path("run.json"), self._run_record)

    # -- the steps (override) -----------------------------------------------------
    def setup(self):
        """Build what the run needs; register everything on ``self.stack``."""

    def run(self):
        """Do the work; save raw evidence under ``self.out_dir``."""
        raise NotImplementedError

    def teardown(self):
        self.stack.close()

    @classmethod
    def verify(cls, ev):
        """Return the list of :class:`Claim`, from ``ev`` (the results folder) only."""
        raise NotImplementedError

    @classmethod
    def plot(cls, ev):
        """Draw PNGs from the files the run saved (optional)."""

    # -- driver ----------------------------------------------------------------------
    def execute(self, verify=True):
        """setup -> run -> teardown -> verify -> plot; always writes metrics.json.

        Returns the list of claims. Verification happens after teardown, from
        saved evidence only, so a failed claim never leaves the network up.
        ``verify=False`` stops after teardown (status "ran"): inside User-Mode
        Linux, where Python is 2-4x slower, the host verifies the folder after.
        """
        os.makedirs(self.out_dir, exist_ok=True)
        write_json(self.path("params.json"), {"experiment": self.name, "params": self.params})
        write_json(self.path("run.json"), self._run_record)
        started = time.time()
        status, error, figures = "error", None, {}
        try:
            try:
                self.setup()
                self.run()
            finally:
                self.teardown()
            if verify:
                self.claims, figures, status = verify_and_plot(type(self), self.out_dir, self.log)
            else:
                status = "ran"
        except (KeyboardInterrupt, Interrupted) as exc:
            status, error = "interrupted", str(exc) or "interrupted"
            raise
        except WirelabError as exc:
            error = str(exc)
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            with open(self.path("traceback.txt"), "w") as f:
                f.write(traceback.format_exc())
            raise
        finally:
            write_json(self.path("metrics.json"), {
                "experiment": self.name, "status": status, "error": error,
                "duration_s": round(time.time() - started, 3),
                "claims": [c.to_dict() for c in self.claims],
                "metrics": figures,
            })
        return self.claims


def verify_and_plot(cls, out_dir, log):
    """``cls.verify`` then ``cls.plot`` on the folder: (claims, figures, status)."""
    ev = Evidence(out_dir, cls.Params, writable=True)
    claims = list(cls.verify(ev))
    figures = ev.metrics
    status = "pass" if claims and all(c.ok for c in claims) else "fail"
    try:
        cls.plot(ev)
    except Exception as exc:  # a plot must not hide the verdict
        log(f"plot failed: {exc}")
        figures.setdefault("plot_errors", []).append(str(exc))
    return claims, figures, status


def conclude_after_uml(cls, out_dir, log):
    """Verify and plot, on the host, the folder a run inside UML left (status
    "ran"); rewrite its metrics.json with the claims. Returns the claims."""
    metrics_path = os.path.join(out_dir, "metrics.json")
    try:
        with open(metrics_path) as f:
            ran = json.load(f)
    except (OSError, ValueError) as exc:
        raise EvidenceError(f"{metrics_path}: the run inside User-Mode Linux left no metrics.json: {exc}") from None
    if ran.get("status") != "ran":
        raise EvidenceError(f"{metrics_path}: the run inside User-Mode Linux ended {ran.get('status')!r}, "
                            f"not 'ran': {ran.get('error')}")
    started = time.time()
    claims, figures, status = [], {}, "error"
    try:
        claims, figures, status = verify_and_plot(cls, out_dir, log)
    finally:
        write_json(metrics_path, {
            "experiment": cls.name, "status": status, "error": None if status != "error" else "verify failed",
            "duration_s": round(ran.get("duration_s", 0) + time.time() - started, 3),
            "run_in_uml_s": ran.get("duration_s"),
            "claims": [c.to_dict() for c in claims],
            "metrics": figures,
        })
    return claims


def reverify(folder):
    """Verify a results folder again from its files alone.

    Returns ``(cls, claims, saved)``: the experiment class (from params.json),
    the claims computed now, and the claims its run saved in metrics.json."""
    from wirelab.experiment import registry
    folder = os.path.abspath(folder)
    head = Evidence(folder)
    if not head.experiment:
        raise ConfigError(f"{folder}: params.json names no experiment")
    cls = registry.load(head.experiment)
    try:
        ev = Evidence(folder, cls.Params)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{folder}: params.json does not fit {cls.name}: {exc}") from None
    claims = list(cls.verify(ev))
    saved = [Claim.from_dict(c) for c in ev.json("metrics.json", default={}).get("claims", [])]
    return cls, claims, saved


# -- command line ---------------------------------------------------------------------
def _option(field):
    return "--" + field.name.replace("_", "-")


def build_parser(cls, prog=None):
    parser = argparse.ArgumentParser(
        prog=prog or f"experiments/{cls.name}.py",
        description=(cls.description or cls.__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls.Params)
    for field in dataclasses.fields(cls.Params):
        if not field.init:
            continue
        kind = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        help_text = field.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(_option(field), dest=field.name,
                                action=argparse.BooleanOptionalAction, default=default,
                                help=f"{help_text} (default: {default})")
            continue
        origin = typing.get_origin(kind)
        if origin in (tuple, list):
            inner = typing.get_args(kind)[0]
            parser.add_argument(_option(field), dest=field.name, default=default,
                                type=_caster(inner, field.name), nargs="+",
                                metavar=field.name.upper(),
                                help=f"{help_text} (default: {' '.join(map(str, default or ()))})")
            continue
        parser.add_argument(_option(field), dest=field.name, default=default,
                            type=_caster(kind, field.name), metavar=field.name.upper(),
                            help=f"{help_text} (default: {default})")
    parser.add_argument("--out", default=None,
                        help="results folder (default: results/<experiment>/<UTC time>/)")
    parser.add_argument("--json", action="store_true",
                        help="print metrics.json to stdout at the end")
    parser.add_argument("--native", action="store_true",
                        help=argparse.SUPPRESS)  # set when re-executed inside UML
    parser.add_argument("--no-verify", action="store_true",
                        help=argparse.SUPPRESS)  # inside UML: run only; the host verifies
    return parser


def _caster(kind, name):
    if kind is typing.Any:
        kind = str

    def cast(text):
        try:
            return kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"{name}: expected {getattr(kind, '__name__', kind)}, got {text!r}") from None
    return cast


def params_from_args(cls, args):
    values = {}
    for field in dataclasses.fields(cls.Params):
        if field.init:
            value = getattr(args, field.name)
            if isinstance(value, list):
                value = tuple(value)
            values[field.name] = value
    return cls.Params(**values)


def print_claims(claims, stream=sys.stdout):
    width = max([len(c.name) for c in claims] + [5])
    print(f"{'claim':{width}}  result  measured / expected", file=stream)
    print("-" * (width + 40), file=stream)
    for c in claims:
        result = "PASS" if c.ok else "FAIL"
        detail = short(c.measured, 40) if c.measured is not None else ""
        if c.expected is not None:
            detail += f" / {short(c.expected, 30)}"
        if c.tolerance is not None:
            detail += f" (tol {short(c.tolerance, 20)})"
        print(f"{c.name:{width}}  {result:6}  {detail}", file=stream)


# Long enough for a sweep inside User-Mode Linux, where Python runs 2-4x slower.
UML_TIMEOUT_S = 3600


def _without_out(argv):
    """``argv`` less any ``--out X`` / ``--out=X`` and ``--native``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out=") and a not in ("--native", "--no-verify"):
            out.append(a)
    return out


def reexec_in_uml(cls, argv, out):
    """Run this experiment again, unchanged, inside User-Mode Linux (sch_netem).

    ``out`` is the (absolute) results folder: created here, writable there.
    """
    from wirelab.net import uml
    print(f"wirelab: this kernel has no sch_netem; running {cls.name} inside "
          f"User-Mode Linux (linux.uml {uml.uml_version()})", flush=True)
    script = os.path.join(REPO, "experiments", f"{cls.name}.py")
    inner = [sys.executable, script, *_without_out(argv), "--out", out, "--native", "--no-verify"]
    writable = RESULTS_ROOT if out.startswith(RESULTS_ROOT + os.sep) else out
    # The guest's root is read-only: matplotlib keeps its cache in the guest's /tmp.
    return uml.run_in_uml(inner, cwd=REPO, writable=[writable], env={"MPLCONFIGDIR": "/tmp/matplotlib"},
                          timeout=UML_TIMEOUT_S)


def main(cls, argv=None, prog=None):
    """Entry point for ``experiments/<name>.py`` and ``wirelab run <name>``:
    parse, validate, run, report.

    Exit codes: 0 every claim holds; 7 a claim failed; 2 bad parameters;
    3-5 preflight; 6 a command failed; 130 interrupted; 1 anything else.
    """
    parser = build_parser(cls, prog)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        params = params_from_args(cls, args)
    except ConfigError as exc:
        parser.exit(2, f"{prog}: error: {exc}\n")
    from wirelab.net.testbed import signals_raise
    try:
        with signals_raise():   # SIGTERM/SIGHUP unwind like Ctrl-C: teardown runs
            from wirelab.net.preflight import require_basics
            require_basics()
            try:
                if args.out:
                    out = os.path.abspath(args.out)
                    os.makedirs(out, exist_ok=True)
                else:
                    out = new_results_dir(os.path.join(RESULTS_ROOT, cls.name))
            except OSError as exc:
                print(f"{prog}: error: cannot create the results folder: {exc}", file=sys.stderr)
                return 2
            if cls.needs_netem_for(params) and not args.native:
                from wirelab.net import uml
                from wirelab.net.kernel import has_sch_netem
                if not uml.in_uml() and not has_sch_netem():
                    code = reexec_in_uml(cls, argv if argv is not None else sys.argv[1:], out)
                    if code != 0:
                        return code
                    exp = cls(params, out_dir=out)
                    exp.log("verifying on the host, from the folder the run inside User-Mode Linux left")
                    claims = conclude_after_uml(cls, out, exp.log)
                    return _conclude(cls, exp, claims, args)
            exp = cls(params, out_dir=out)
            exp.log(f"results -> {os.path.relpath(exp.out_dir)}")
            claims = exp.execute(verify=not args.no_verify)
            if args.no_verify:
                print(f"{cls.name}: run complete; evidence in {exp.out_dir} (verified by the caller)")
                return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"{prog}: interrupted; the network was torn down", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except WirelabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:   # a results file could not be written: disk full, permissions
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    return _conclude(cls, exp, claims, args)


def _conclude(cls, exp, claims, args):
    """Print the claims table and the verdict; the exit code."""
    print()
    print_claims(claims)
    ok = bool(claims) and all(c.ok for c in claims)
    print(f"\n{cls.name}: {'all claims hold' if ok else 'SOME CLAIMS FAILED'}; "
          f"results in {os.path.relpath(exp.out_dir)}")
    if args.json:
        with open(exp.path("metrics.json")) as f:
            sys.stdout.write(f.read())
    return 0 if ok else VerificationError.exit_code
