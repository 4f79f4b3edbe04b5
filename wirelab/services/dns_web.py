"""A tiny HTTP server for fetching a host by name: who answered, for which Host.

Run inside a node::

    python wirelab/services/dns_web.py --bind 10.20.30.10 --port 80 --node srv1

Prints ``LISTENING <addr> <port>`` (flushed) once bound, then serves every GET
with a JSON body ``{"node", "host", "path", "client"}``: the server's node
name, the Host header the client sent (the name it looked up), the path and
the client's address. Runs until SIGINT/SIGTERM; exits non-zero with a
one-line error when it cannot bind.
"""

import argparse
import http.server
import json
import signal
import sys


def handler_for(node):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "wirelab-dns-web"

        def do_GET(self):
            body = json.dumps({"node": node, "host": self.headers.get("Host"), "path": self.path,
                               "client": self.client_address[0]}).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):     # one JSON line per request, on stdout
            print(json.dumps({"request": self.requestline, "client": self.client_address[0]}), flush=True)
    return Handler


def main(argv=None):
    ap = argparse.ArgumentParser(description="Serve GET with a JSON body naming this node and the Host asked for.")
    ap.add_argument("--bind", required=True, help="address to listen on")
    ap.add_argument("--port", type=int, default=80, help="TCP port (default 80)")
    ap.add_argument("--node", required=True, help="the node's name, echoed in every answer")
    args = ap.parse_args(argv)
    try:
        server = http.server.HTTPServer((args.bind, args.port), handler_for(args.node))
    except OSError as exc:
        print(f"dns_web: cannot listen on {args.bind}:{args.port}: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"LISTENING {args.bind} {args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
