"""``wirelab geolocate ADDRESS... [--db FILE] [--json] [--build-only]``.

One line per address (address, matched prefix, city, region, country,
"lat,lon", org) or ``bogon: why``; ``--json``: one JSON object per line (the
dict of :func:`wirelab.geo.lookup.geolocate`). Exit 0 when every address was
answered (a bogon is an answer), 1 when one is in no database, 2 for a bad
address or a ``--db`` that is not a MaxMind DB file (one line on stderr).
"""

import argparse
import json
import os
import sys
import time

from wirelab.errors import ConfigError

EPILOG = """\
databases:
  default       the 'internet' topology's, derived from its address plan and written to
                ~/.cache/wirelab/geo/ (rebuilt when the plan or the places change)
  --topo SPEC   another topology's: 'zoo,Abilene' (a Topology Zoo backbone, its cities)
  --db FILE     any MaxMind DB City file (a real GeoLite2/GeoIP2 City .mmdb): private
                and reserved ranges answer as bogons, as ipinfo does

examples:
  wirelab geolocate 10.20.30.10 10.20.1.2 10.99.0.1     /24, /16 and /8: three cities
  wirelab geolocate 192.0.2.1 ::1 --json
  wirelab geolocate 81.2.69.142 --db GeoLite2-City.mmdb
  wirelab geolocate --build-only --all                  build every topology's database"""


def build_parser(prog):
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Where is an address? A longest-prefix match in a MaxMind DB (.mmdb), as "
        "routing does: the answer shows the prefix that matched. By default the database of "
        "the emulated network (GeoIP2-City-shaped records built from the topology's address "
        "plan: its own answers come first, also in private space, flagged emulated); offline.")
    parser.add_argument("addresses", metavar="ADDRESS", nargs="*", help="IPv4 or IPv6 addresses")
    parser.add_argument("--db", metavar="FILE", help="look up in this .mmdb file instead")
    parser.add_argument("--topo", metavar="SPEC", default=None,
                        help="the topology whose database to use (default: internet)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--build-only", action="store_true",
                        help="build (or find) the database, print its path and figures, look up nothing")
    parser.add_argument("--all", action="store_true",
                        help="with --build-only: every topology with a geography (internet, zoo,*)")
    return parser


def geographic_topologies():
    """(specs, notes): 'internet' and 'zoo,<network>' for every Internet Topology
    Zoo network topologies/zoo.py offers, or a note when it is not there."""
    from wirelab.geo.build import _repo_topologies
    _repo_topologies()
    try:
        from topologies import zoo, zoo_plan
    except ImportError:
        return ["internet"], ["zoo: topologies/zoo.py is not there: Topology Zoo skipped"]
    return ["internet"] + [f"{zoo.ZooTopo.topo_name},{name}"
                           for name in zoo_plan.available("topozoo")], []


def _build_only(args, prog):
    from wirelab.geo.build import DEFAULT_TOPOLOGY, database_for
    if args.all:
        specs, notes = geographic_topologies()
    else:
        specs, notes = [args.topo or DEFAULT_TOPOLOGY], []
    for note in notes:
        print(f"{prog}: {note}", file=sys.stderr)
    started = time.perf_counter()
    failed = 0
    for spec in specs:
        try:
            db = database_for(spec)
        except ConfigError as exc:
            if not args.all:
                raise
            failed += 1
            print(f"{prog}: {spec}: {exc}", file=sys.stderr)
            continue
        size = os.path.getsize(db.path)
        figures = {"topology": spec, "path": db.path, "networks": len(db.records),
                   "bytes": size, "built": db.built, "seconds": round(db.seconds, 4)}
        if args.json:
            print(json.dumps(figures))
        else:
            what = "built" if db.built else "up to date"
            print(f"{spec}: {db.path}  {len(db.records)} networks, {size} bytes, "
                  f"{what} in {db.seconds:.3f} s")
    if args.all and not args.json:
        print(f"{len(specs) - failed} databases in {time.perf_counter() - started:.2f} s")
    return 1 if failed else 0


def main(argv, prog="wirelab geolocate"):
    args = build_parser(prog).parse_args(argv)
    if args.db and (args.topo or args.all):
        raise ConfigError("--db names a database file: --topo and --all choose one of ours")
    if args.all and not args.build_only:
        raise ConfigError("--all goes with --build-only")
    if args.build_only:
        if args.db:
            raise ConfigError("--build-only builds our database: it does not go with --db")
        return _build_only(args, prog)
    if not args.addresses:
        raise ConfigError("name at least one ADDRESS (or --build-only)")
    from wirelab.geo.lookup import GeoDatabase, parse_address
    addresses = [parse_address(a) for a in args.addresses]   # every one checked first
    if args.db:
        path = args.db
    else:
        from wirelab.geo.build import database_for
        path = database_for(args.topo or "internet").path
    missing = 0
    with GeoDatabase(path) as database:
        for address in addresses:
            answer = database.lookup(address)
            missing += not (answer.found or answer.bogon)
            print(json.dumps(answer.to_dict()) if args.json else answer.line())
    return 1 if missing else 0


if __name__ == "__main__":
    from wirelab.cli import main_guard
    sys.exit(main_guard(lambda: main(sys.argv[1:]), "wirelab geolocate"))
