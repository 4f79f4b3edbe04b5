"""The ``wirelab`` command: one entry point for experiments, reports and tools.

    wirelab list                          the experiments, one line each
    wirelab run EXPERIMENT [options]      run one (the options of experiments/EXPERIMENT.py)
    wirelab verify DIR [--json]           re-check an old results folder from its files, no root
    wirelab report [DIR]                  render a report folder's index.html and report.md again
    wirelab suite [options]               the main job: every experiment, then a report
    wirelab pcapstat FILE [options]       per-connection TCP statistics of a capture
    wirelab preflight                     can this machine run wirelab?
    wirelab clean                         remove exactly what crashed runs left behind
    wirelab topo NAME[,args]              Mininet's CLI on a topology, cleaned up on exit
    wirelab completion bash               a bash completion script

Every subcommand has ``--help``. Errors are one line on stderr; the exit code
says what kind (:mod:`wirelab.errors`): 0 ok, 1 other, 2 bad arguments or
parameters, 3-5 the machine cannot run wirelab (4: not root), 6 a command
failed, 7 a claim failed, 8 a wait timed out, 9 a results folder lacks or
breaks a file, 130 interrupted. ``WIRELAB_DEBUG=1`` shows a traceback for
unexpected errors.
"""

import argparse
import importlib.util
import json
import os
import sys

from wirelab.errors import ConfigError, Interrupted, VerificationError, WirelabError

PROG = "wirelab"


# -- the subcommands: each parses its own arguments ---------------------------------------
def cmd_list(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description="List the experiments (experiments/*.py) "
                                     "in teaching order, with the first line of each one's description.")
    parser.add_argument("--json", action="store_true", help="print {name: summary} as JSON")
    args = parser.parse_args(argv)
    from wirelab.experiment import registry
    summaries = {name: registry.summary(name) for name in registry.names()}
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        width = max([len(n) for n in summaries] + [10])
        for name, summary in summaries.items():
            print(f"{name:{width}}  {summary}")
    return 0


def cmd_run(argv, prog):
    from wirelab.experiment import core, registry
    if not argv or argv[0] in ("-h", "--help"):
        names = registry.names()
        width = max([len(n) for n in names] + [10])
        print(f"usage: {prog} EXPERIMENT [options]\n\n"
              "Run one experiment, exactly as ./experiments/EXPERIMENT.py (same options, same\n"
              "results folder results/EXPERIMENT/<UTC time>/, same exit codes); needs root.\n"
              f"'{prog} EXPERIMENT --help' lists its options.\n\nexperiments:")
        for name in names:
            print(f"  {name:{width}}  {registry.summary(name)}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    cls = registry.load(name)
    return core.main(cls, rest, prog=f"{prog} {name}")


def _canonical(claim):
    from wirelab.experiment.evidence import to_jsonable
    return json.dumps(to_jsonable(claim.to_dict()), sort_keys=True)


def cmd_verify(argv, prog):
    parser = argparse.ArgumentParser(
        prog=prog, description="Verify a results folder (results/EXPERIMENT/<time>/) again from its "
        "files alone -- params.json, run.json, the case folders, pcaps and logs -- without root, and "
        "compare the claims with those its run saved in metrics.json. Exit 0 when every claim "
        "holds, 7 when one fails, another code (one line on stderr) when the folder cannot be read.")
    parser.add_argument("dir", metavar="DIR", help="an experiment's results folder")
    parser.add_argument("--json", action="store_true",
                        help="print the claims (now and as saved) as JSON instead of a table")
    args = parser.parse_args(argv)
    from wirelab.experiment import registry
    from wirelab.experiment.core import print_claims, reverify
    from wirelab.experiment.evidence import Evidence, EvidenceError
    folder = args.dir
    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: no such results folder")
    head = Evidence(folder)
    if not head.experiment:
        raise EvidenceError(f"{folder}: params.json names no experiment")
    cls = registry.load(head.experiment)
    try:
        cls, claims, saved = reverify(folder)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise EvidenceError(f"{folder}: {cls.name} cannot verify this folder: "
                            f"{type(exc).__name__}: {exc}") from None
    ok = bool(claims) and all(c.ok for c in claims)
    now, before = [_canonical(c) for c in claims], [_canonical(c) for c in saved]
    same = now == before
    changed = sorted({c.name for c, k in zip(claims, now) if k not in before}
                     | {c.name for c, k in zip(saved, before) if k not in now})
    if args.json:
        print(json.dumps({"folder": os.path.abspath(folder), "experiment": cls.name, "ok": ok,
                          "same_as_saved": same, "changed": changed,
                          "claims": [json.loads(k) for k in now],
                          "saved_claims": [json.loads(k) for k in before]}, indent=2))
    else:
        print(f"{cls.name}: {len(claims)} claims verified again from {folder}\n")
        print_claims(claims, stream=sys.stdout)
        if not saved:
            comparison = "metrics.json saved no claims to compare with"
        elif same:
            comparison = "the same claims as its run saved"
        else:
            comparison = f"DIFFERENT from what its run saved: {', '.join(changed) or 'order or count'}"
        print(f"\n{cls.name}: {'all claims hold' if ok else 'SOME CLAIMS FAILED'}; {comparison}")
    return 0 if ok else VerificationError.exit_code


def cmd_report(argv, prog):
    from wirelab.experiment import report
    from wirelab.experiment.core import REPO, RESULTS_ROOT
    parser = argparse.ArgumentParser(
        prog=prog, description="Render a report folder (results/report/<time>/) again: index.html (one "
        "self-contained page, plots embedded) and report.md, from its summary.json and the experiment "
        "folders it names. Needs no root.")
    parser.add_argument("dir", metavar="DIR", nargs="?",
                        help="the report folder (default: the newest results/report/*)")
    args = parser.parse_args(argv)
    report_dir = args.dir or report.newest_report(RESULTS_ROOT)
    if report_dir is None:
        raise ConfigError(f"no report under {os.path.relpath(RESULTS_ROOT)}/report: "
                          "run 'wirelab suite' first, or name a report folder")
    if not os.path.isdir(report_dir):
        raise ConfigError(f"{report_dir}: no such report folder")
    for path in report.rerender(report_dir):
        print(os.path.relpath(path, REPO) if path.startswith(REPO + os.sep) else path)
    return 0


def cmd_suite(argv, prog):
    from wirelab.experiment import suite
    return suite.main(argv, prog=prog)


def cmd_pcapstat(argv, prog):
    from wirelab.experiment.core import REPO
    path = os.path.join(REPO, "tools", "pcapstat.py")
    spec = importlib.util.spec_from_file_location("wirelab_tools_pcapstat", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def cmd_preflight(argv, prog):
    from wirelab.net import preflight
    return preflight.main(argv, prog=prog)


def cmd_clean(argv, prog):
    from wirelab.net import clean
    return clean.main(argv, prog=prog)


def _topologies():
    from wirelab.experiment.core import REPO
    if REPO not in sys.path:   # topologies/ is a package beside wirelab/
        sys.path.insert(0, REPO)
    import topologies
    return topologies.all_topos()


def cmd_topo(argv, prog):
    topos = _topologies()
    lines = [f"  {name:9} {(cls.__doc__ or '').strip().splitlines()[0]}" for name, cls in topos.items()]
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a topology of topologies/ and open Mininet's CLI on it (like "
        "'mn --custom topologies/line.py --topo line,3 --controller none'). The network is a "
        "Testbed: everything it created is removed when the CLI exits, on Ctrl-D, 'exit', "
        "an error, SIGTERM or Ctrl-C while it is being built. Needs root.",
        epilog="topologies (NAME[,arg,...,key=value], as mn --topo; see each file's docstring):\n"
               + "\n".join(lines) + "\n\nexamples:\n  wirelab topo line,3\n"
               "  wirelab topo line,n=5,base=10.64.0.0/16\n  wirelab topo internet")
    parser.add_argument("spec", metavar="NAME[,args]", help="topology and its parameters")
    parser.add_argument("--script", metavar="FILE",
                        help="run the Mininet CLI commands in FILE, then tear down (no prompt)")
    args = parser.parse_args(argv)
    from mininet.util import splitArgs
    name, pos, kw = splitArgs(args.spec)
    if name not in topos:
        raise ConfigError(f"unknown topology {name!r}; choose from {', '.join(topos)}")
    if args.script and not os.path.isfile(args.script):
        raise ConfigError(f"{args.script}: no such file")
    try:
        topo = topos[name](*pos, **kw)
    except TypeError as exc:
        raise ConfigError(f"{name}: bad parameters {args.spec!r}: {exc}") from None
    from wirelab.net.testbed import Testbed
    try:
        with Testbed(topo, log=lambda msg: print(f"{prog}: {msg}", flush=True)) as tb:
            _mininet_cli(tb.net, args.script)
    except TerminatedInCli as exc:
        print(f"\n{prog}: {exc}; network removed", file=sys.stderr, flush=True)
        return 143
    print(f"{prog}: network removed", flush=True)
    return 0


class TerminatedInCli(SystemExit):
    """SIGTERM/SIGHUP while Mininet's CLI runs. A SystemExit, because Mininet's
    log handler swallows every other exception raised while it writes (its bare
    ``except:`` re-raises only KeyboardInterrupt and SystemExit): Testbed's
    ``Interrupted`` arriving then would be lost and the CLI would go on."""


def _mininet_cli(net, script):
    import signal
    from mininet.cli import CLI
    from mininet.log import setLogLevel

    def handler(signum, _frame):
        raise TerminatedInCli(f"interrupted by {signal.Signals(signum).name}")
    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    setLogLevel("info")   # as mn: "*** Starting CLI", the output of commands
    try:
        CLI(net, script=script)   # Ctrl-C interrupts a command, Ctrl-D or 'exit' leaves
    finally:
        setLogLevel("output")
        for sig, old in saved.items():
            signal.signal(sig, old)


def cmd_completion(argv, prog):
    parser = argparse.ArgumentParser(
        prog=prog, description="Print a shell completion script. Load it with "
        "'source <(wirelab completion bash)', or save it as /etc/bash_completion.d/wirelab "
        "(scripts/setup.sh does).")
    parser.add_argument("shell", choices=["bash"])
    parser.parse_args(argv)
    print(bash_completion())
    return 0


COMMANDS = {   # name: (handler, one line for the overview)
    "list": (cmd_list, "the experiments, one line each"),
    "run": (cmd_run, "run one experiment (the options of ./experiments/EXPERIMENT.py); root"),
    "verify": (cmd_verify, "re-check an old results folder from its files, without root"),
    "report": (cmd_report, "render a report folder's index.html and report.md again"),
    "suite": (cmd_suite, "the main job: every experiment, then a report (scripts/demo.sh); root"),
    "pcapstat": (cmd_pcapstat, "per-connection TCP statistics of a pcap/pcapng file"),
    "preflight": (cmd_preflight, "can this machine run wirelab?"),
    "clean": (cmd_clean, "remove exactly what crashed runs left behind; root"),
    "topo": (cmd_topo, "Mininet's CLI on a topology, cleaned up on exit; root"),
    "packet": (lambda argv, prog: importlib.import_module("wirelab.packets.cli").main(argv, prog), "scapy tools: craft, sniff, trace, handshake (root)"),
    "geolocate": (lambda argv, prog: importlib.import_module("wirelab.geo.cli").main(argv, prog), "where is an address: offline lookup in a MaxMind DB of the emulated network"),
    "messages": (lambda argv, prog: importlib.import_module("wirelab.observe.messages_cli").main(argv, prog), "app JSON messages rebuilt from a capture; --logs compares them with app logs"),
    "completion": (cmd_completion, "print a bash completion script"),
}


def bash_completion():
    """A small bash completion script: subcommands, experiment names and each
    experiment's options, topology names; files and folders elsewhere."""
    from wirelab.experiment import core, registry
    names = registry.names()
    cases = []
    for name in names:
        parser = core.build_parser(registry.load(name))
        options = sorted(o for a in parser._actions if a.help != argparse.SUPPRESS
                         for o in a.option_strings if o.startswith("--"))
        cases.append(f"            {name}) opts='{' '.join(options)}' ;;")
    return "\n".join([
        "# bash completion for wirelab (generated by: wirelab completion bash)",
        "_wirelab() {",
        "    local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} opts",
        "    if [ \"$COMP_CWORD\" -eq 1 ]; then",
        f"        COMPREPLY=($(compgen -W '{' '.join(COMMANDS)} --help' -- \"$cur\")); return",
        "    fi",
        "    case $cmd in",
        "    run)",
        "        if [ \"$COMP_CWORD\" -eq 2 ]; then",
        f"            COMPREPLY=($(compgen -W '{' '.join(names)}' -- \"$cur\")); return",
        "        fi",
        "        case ${COMP_WORDS[2]} in",
        *cases,
        "            *) opts='--help' ;;",
        "        esac",
        "        COMPREPLY=($(compgen -W \"$opts --help\" -- \"$cur\")) ;;",
        "    verify|report) COMPREPLY=($(compgen -d -- \"$cur\")) ;;",
        f"    topo) COMPREPLY=($(compgen -W '{' '.join(_topologies())} --script --help' -- \"$cur\")) ;;",
        "    completion) COMPREPLY=($(compgen -W 'bash' -- \"$cur\")) ;;",
        "    suite) COMPREPLY=($(compgen -W \"--only --timeout --json --help\" -- \"$cur\")) ;;",
        "    *) COMPREPLY=($(compgen -f -- \"$cur\")) ;;",
        "    esac",
        "}",
        "complete -o filenames -F _wirelab wirelab",
    ])


def top_parser():
    width = max(len(n) for n in COMMANDS)
    overview = "\n".join(f"  {name:{width}}  {text}" for name, (_, text) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="wirelab: an emulated network you can measure and prove things with.",
        epilog=f"commands ('{PROG} COMMAND --help' for each one's options):\n{overview}\n\n"
               "exit codes: 0 ok, 2 bad arguments, 3-5 machine not ready (4: not root), 6 a command "
               "failed,\n7 a claim failed, 9 a results folder lacks a file, 130 interrupted.")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main_guard(body, prog):
    """Run ``body()``; turn every error into one line on stderr and an exit code."""
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Interrupted as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except WirelabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:   # `wirelab list | head`: the reader left; not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if os.environ.get("WIRELAB_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc} "
              "(WIRELAB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = top_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    handler, _ = COMMANDS[args.command]
    prog = f"{PROG} {args.command}"
    return main_guard(lambda: handler(args.args, prog), prog)


if __name__ == "__main__":
    sys.exit(main())
