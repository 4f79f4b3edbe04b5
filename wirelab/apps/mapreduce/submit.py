"""Submit a MapReduce job to a manager, or tell it to shut down.

    mapreduce-submit --host 10.0.0.1 --port 6000 --input in/ --output out/ \\
        --mapper wordcount_map.py --reducer wordcount_reduce.py --nmappers 4 --nreducers 2
    mapreduce-submit --host 10.0.0.1 --port 6000 --shutdown

Sends one ``new_manager_job`` (paths made absolute: the manager and the
workers may run elsewhere in the tree) and exits 0 once the manager has the
message; the job runs on. With --shutdown, sends ``shutdown`` instead: the
manager passes it to every live worker and exits.
"""

import argparse
import os
import sys

from wirelab.apps.mapreduce import common
from wirelab.apps.mapreduce.events import EventLog
from wirelab.apps.mapreduce.wire import CONNECT_TIMEOUT_S, send_tcp

PROG = "mapreduce-submit"
HERE = os.path.dirname(os.path.abspath(__file__))
WORDCOUNT_MAP = os.path.join(HERE, "wordcount_map.py")
WORDCOUNT_REDUCE = os.path.join(HERE, "wordcount_reduce.py")


def job_message(input_dir, output_dir, mapper, reducer, nmappers, nreducers):
    return {"message_type": "new_manager_job",
            "input_directory": os.path.abspath(input_dir),
            "output_directory": os.path.abspath(output_dir),
            "mapper_executable": os.path.abspath(mapper),
            "reducer_executable": os.path.abspath(reducer),
            "num_mappers": nmappers, "num_reducers": nreducers}


def parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="localhost", help="the manager's address")
    p.add_argument("--port", type=common.port_number, default=6000, help="the manager's port")
    p.add_argument("--input", help="directory of input files")
    p.add_argument("--output", help="directory for part-XXXXX files (emptied by the manager)")
    p.add_argument("--mapper", default=WORDCOUNT_MAP, help="mapper executable (default: word count)")
    p.add_argument("--reducer", default=WORDCOUNT_REDUCE, help="reducer executable (default: word count)")
    p.add_argument("--nmappers", type=common.positive_int, default=2)
    p.add_argument("--nreducers", type=common.positive_int, default=2)
    p.add_argument("--shutdown", action="store_true", help="send shutdown instead of a job")
    p.add_argument("--timeout", type=common.positive_float, default=CONNECT_TIMEOUT_S, metavar="S")
    p.add_argument("--event-log", default=None, metavar="FILE", help="append the send event here")
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.shutdown:
        if args.input or args.output:
            p.error("--shutdown sends only the shutdown message: drop --input/--output")
        message = {"message_type": "shutdown"}
    else:
        if not args.input or not args.output:
            p.error("a job needs --input and --output (or give --shutdown)")
        for option, path in (("--input", args.input),):
            if not os.path.isdir(path):
                p.error(f"{option} {path}: not a directory")
        for option, path in (("--mapper", args.mapper), ("--reducer", args.reducer)):
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                p.error(f"{option} {path}: not an executable file")
        message = job_message(args.input, args.output, args.mapper, args.reducer,
                              args.nmappers, args.nreducers)

    def body():
        events = EventLog(args.event_log)
        try:
            send_tcp(args.host, args.port, message, events, timeout=args.timeout)
        except OSError as exc:
            raise common.MapReduceError(f"cannot reach the manager at {args.host}:{args.port}: "
                                        f"{exc.strerror or exc}") from None
        finally:
            events.close()
        return 0
    return common.run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
