"""The experiment framework: setup -> run -> verify -> teardown, with evidence.

An experiment subclasses :class:`Experiment`, names a frozen, validated
``Params`` dataclass and implements ``setup``, ``run``, ``verify`` (returning
:class:`Claim` objects, each with its measured value, expectation, tolerance and
evidence) and optionally ``plot`` (which reads only the files the run saved).
:func:`main` gives it a command line generated from the dataclass, with --help.

Each run writes ``results/<experiment>/<UTC time>/``: ``params.json``, raw logs
and pcaps, ``metrics.json`` (claims and figures) and plots.
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

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS_ROOT = os.path.join(REPO, "results")


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
        if self.measured is not None:
            parts.append(f"measured={_short(self.measured)}")
        if self.expected is not None:
            parts.append(f"expected={_short(self.expected)}")
        if self.tolerance is not None:
            parts.append(f"tolerance={_short(self.tolerance)}")
        return "  ".join(parts)


def _short(value, limit=60):
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def to_jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(to_jsonable(obj), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class Experiment:
    """Base class. Subclasses set ``name``, ``Params`` and the four steps."""

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
        self.metrics = {}
        self.claims = []
        self.stack = contextlib.ExitStack()

    def path(self, *parts):
        return os.path.join(self.out_dir, *parts)

    # -- the four steps (override) ---------------------------------------------
    def setup(self):
        """Build what the run needs; register everything on ``self.stack``."""

    def run(self):
        """Do the work; save raw evidence under ``self.out_dir``; fill ``self.metrics``."""
        raise NotImplementedError

    def verify(self):
        """Return a list of :class:`Claim` computed from the saved evidence."""
        raise NotImplementedError

    def teardown(self):
        self.stack.close()

    def plot(self):
        """Draw PNGs from the files the run saved (optional)."""

    # -- driver ----------------------------------------------------------------------
    def execute(self):
        """setup -> run -> teardown -> verify -> plot; always writes metrics.json.

        Returns the list of claims. Verification happens after teardown, from
        saved evidence, so a failed claim never leaves the network up.
        """
        os.makedirs(self.out_dir, exist_ok=True)
        write_json(self.path("params.json"), {"experiment": self.name,
                                              "params": self.params})
        started = time.time()
        status, error = "error", None
        try:
            try:
                self.setup()
                self.run()
            finally:
                self.teardown()
            self.claims = list(self.verify())
            status = "pass" if self.claims and all(c.ok for c in self.claims) else "fail"
            try:
                self.plot()
            except Exception as exc:  # a plot must not hide the verdict
                self.log(f"plot failed: {exc}")
                self.metrics.setdefault("plot_errors", []).append(str(exc))
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
                "claims": [dataclasses.asdict(c) for c in self.claims],
                "metrics": self.metrics,
            })
        return self.claims


# -- command line ---------------------------------------------------------------------
def _option(field):
    return "--" + field.name.replace("_", "-")


def build_parser(cls):
    parser = argparse.ArgumentParser(
        prog=f"experiments/{cls.name}.py",
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
        detail = _short(c.measured, 40) if c.measured is not None else ""
        if c.expected is not None:
            detail += f" / {_short(c.expected, 30)}"
        if c.tolerance is not None:
            detail += f" (tol {_short(c.tolerance, 20)})"
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
        elif not a.startswith("--out=") and a != "--native":
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
    inner = [sys.executable, script, *_without_out(argv), "--out", out, "--native"]
    writable = RESULTS_ROOT if out.startswith(RESULTS_ROOT + os.sep) else out
    # The guest's root is read-only: matplotlib keeps its cache in the guest's /tmp.
    return uml.run_in_uml(inner, cwd=REPO, writable=[writable], env={"MPLCONFIGDIR": "/tmp/matplotlib"},
                          timeout=UML_TIMEOUT_S)


def main(cls, argv=None):
    """Entry point for ``experiments/<name>.py``: parse, validate, run, report.

    Exit codes: 0 every claim holds; 7 a claim failed; 2 bad parameters;
    3-5 preflight; 6 a command failed; 130 interrupted; 1 anything else.
    """
    parser = build_parser(cls)
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
                if not uml.in_uml() and not uml.has_sch_netem():
                    return reexec_in_uml(cls, argv if argv is not None else sys.argv[1:], out)
            exp = cls(params, out_dir=out)
            exp.log(f"results -> {os.path.relpath(exp.out_dir)}")
            claims = exp.execute()
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"{prog}: interrupted; the network was torn down", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except WirelabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:   # a results file could not be written: disk full, permissions
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print()
    print_claims(claims)
    ok = bool(claims) and all(c.ok for c in claims)
    print(f"\n{cls.name}: {'all claims hold' if ok else 'SOME CLAIMS FAILED'}; "
          f"results in {os.path.relpath(exp.out_dir)}")
    if args.json:
        with open(exp.path("metrics.json")) as f:
            sys.stdout.write(f.read())
    return 0 if ok else VerificationError.exit_code
