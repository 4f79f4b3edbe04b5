"""An ipinfo.io-shaped "what is my IP" service, answered from the run's geolocation DB.

Run inside a node::

    python -m wirelab.apps.ipinfo serve --db internet.mmdb --bind 10.20.30.10 --port 80 \\
        --public 100.64.0.0/10 --public 10.0.0.0/8 ...
    python -m wirelab.apps.ipinfo lookup --db internet.mmdb 100.64.0.2 192.168.1.100

``serve`` answers HTTP/1.1 GET, one thread per connection (``http.server``):

* ``/ip``: the address the request came from, as plain text (``curl ipinfo.io/ip``);
* ``/json`` (or ``/``): that address as ipinfo does: ``{"ip", "city", "region",
  "country", "loc", "org"}``; ``/<address>/json`` the same for any address;
  ``/<field>`` (``city``, ``region``, ``country``, ``loc``, ``org``) one field as text;
* an address that is private or reserved is answered, as ipinfo answers it,
  ``{"ip": ..., "bogon": true}`` -- unless it is in the emulated Internet's
  public space (``--public``: what the emulated backbone routes, e.g. the
  ISP's 100.64.0.0/10, which is reserved on the real Internet but public here).

It prints ``LISTENING {"addr", "port"}`` once its socket listens (the house's
ready line, :mod:`wirelab.apps.runner`), then one JSON line per request: the
peer's address and port as the server saw them, the path, the status and the
answer. ``?together=N&group=G`` holds the answer until N requests of group G
are in flight at once (a barrier with a deadline), so that "several at once"
is certain rather than a matter of scheduling.
"""

import argparse
import ipaddress
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

if __package__ in (None, ""):   # run as a file inside a node: the repo is two folders up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from wirelab.errors import WirelabError  # noqa: E402

READY_PREFIX = "LISTENING"
FIELDS = ("ip", "city", "region", "country", "loc", "org")
BARRIER_TIMEOUT_S = 10.0
MAX_TOGETHER = 64


def public_networks(prefixes):
    return [ipaddress.ip_network(p) for p in prefixes]


def answer_for(address, db, public=()):
    """The ipinfo-shaped dict for ``address`` (text), from ``db`` (a
    :class:`wirelab.geo.lookup.GeoDatabase`); ``public``: networks that are
    public in the emulation even though reserved on the real Internet."""
    from wirelab.geo import bogons
    ip = ipaddress.ip_address(address)
    if bogons.bogon(ip) is not None and not any(ip in net for net in public if net.version == ip.version):
        return {"ip": str(ip), "bogon": True}
    found = db.lookup(ip)
    if not found.found:
        return {"ip": str(ip)}
    values = {"ip": str(ip), "city": found.city, "region": found.region, "country": found.country,
              "loc": found.loc, "org": found.org}
    return {k: v for k, v in values.items() if v is not None}


class _Barriers:
    """One threading.Barrier per group name, made by its first request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.groups = {}

    def wait(self, group, parties):
        with self.lock:
            barrier = self.groups.setdefault((group, parties), threading.Barrier(parties))
        try:
            barrier.wait(BARRIER_TIMEOUT_S)
            return True
        except threading.BrokenBarrierError:
            return False


def make_handler(db, public, out, out_lock):
    barriers = _Barriers()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "wirelab-ipinfo/1"

        def log_message(self, *args):   # the JSON lines are the log
            pass

        def _send(self, status, body, ctype):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def do_GET(self):
            started = time.time()
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            peer_ip, peer_port = self.client_address[:2]
            together = None
            if "together" in query:
                try:
                    parties = int(query["together"][0])
                except ValueError:
                    parties = 0
                if 1 <= parties <= MAX_TOGETHER:
                    together = barriers.wait(query.get("group", ["default"])[0], parties)
            status, body, ctype, answer = self.route(url.path, peer_ip)
            # Logged before the answer leaves: once a client has its answer,
            # the server's line for it is already written.
            with out_lock:
                out.write(json.dumps({"t": started, "peer_ip": peer_ip, "peer_port": peer_port,
                                      "path": self.path, "status": status, "answer": answer,
                                      "together": together}) + "\n")
                out.flush()
            self._send(status, body, ctype)

        def route(self, path, peer_ip):
            parts = [p for p in path.split("/") if p]
            target = peer_ip
            if parts and parts[0] not in FIELDS and parts[0] != "json":
                try:
                    target = str(ipaddress.ip_address(parts[0]))
                except ValueError:
                    return 404, json.dumps({"status": 404, "error": {"title": "Wrong ip",
                                            "message": "Please provide a valid IP address"}}), \
                        "application/json", None
                parts = parts[1:]
            answer = answer_for(target, db, public)
            if not parts or parts == ["json"]:
                return 200, json.dumps(answer, indent=2) + "\n", "application/json; charset=utf-8", answer
            if len(parts) == 1 and parts[0] in FIELDS:
                value = answer.get(parts[0])
                if value is None:
                    return 404, "undefined\n", "text/plain; charset=utf-8", answer
                return 200, f"{value}\n", "text/plain; charset=utf-8", answer
            return 404, json.dumps({"status": 404, "error": {"title": "Wrong path"}}), "application/json", None

    return Handler


def serve(args):
    from wirelab.geo.lookup import GeoDatabase
    db = GeoDatabase(args.db)
    public = public_networks(args.public)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    server = Server((args.bind, args.port), make_handler(db, public, sys.stdout, threading.Lock()))
    print(f"{READY_PREFIX} " + json.dumps({"addr": args.bind, "port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def lookup(args):
    from wirelab.geo.lookup import GeoDatabase
    with GeoDatabase(args.db) as db:
        public = public_networks(args.public)
        for address in args.addresses:
            print(json.dumps(answer_for(address, db, public)))
    return 0


def _network(text):
    try:
        return str(ipaddress.ip_network(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a network (e.g. 100.64.0.0/10)") from None


def _address(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wirelab.apps.ipinfo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="answer /ip, /json, /<address>/json over HTTP")
    s.add_argument("--db", required=True, help="the MaxMind DB (.mmdb) to answer from")
    s.add_argument("--bind", default="0.0.0.0", type=_address, help="address to listen on")
    s.add_argument("--port", default=80, type=int, help="TCP port (default 80)")
    s.add_argument("--public", action="append", default=[], type=_network,
                   help="a network that is public in the emulation (repeatable)")
    q = sub.add_parser("lookup", help="print the answer for addresses, no network")
    q.add_argument("--db", required=True, help="the MaxMind DB (.mmdb)")
    q.add_argument("--public", action="append", default=[], type=_network,
                   help="a network that is public in the emulation (repeatable)")
    q.add_argument("addresses", nargs="+", type=_address)
    args = parser.parse_args(argv)
    try:
        return serve(args) if args.command == "serve" else lookup(args)
    except OSError as exc:          # the address is taken, or not ours
        print(f"ipinfo: error: {exc}", file=sys.stderr)
        return 1
    except WirelabError as exc:     # no such database, not a database: one line
        print(f"ipinfo: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
