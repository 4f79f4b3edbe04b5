"""The ipinfo-shaped service: answers from a database built here, bogons as ipinfo
gives them, the HTTP endpoints on loopback, the together-barrier, and the command line."""

import io
import json
import os
import subprocess
import sys
import threading
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from topologies.internet import InternetTopo
from wirelab.apps import ipinfo
from wirelab.geo.build import database_for
from wirelab.geo.lookup import GeoDatabase, geolocate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = "internet,home=nat,dhcp=1"


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    return database_for(SPEC, directory=str(tmp_path_factory.mktemp("geo"))).path


@pytest.fixture(scope="module")
def db(db_path):
    with GeoDatabase(db_path) as d:
        yield d


@pytest.fixture(scope="module")
def public():
    return ipinfo.public_networks(InternetTopo(home="nat", dhcp=1).routed_prefixes())


def test_public_address_gets_the_databases_place(db, db_path, public):
    ans = ipinfo.answer_for("100.64.0.2", db, public)
    geo = geolocate("100.64.0.2", db=db_path)
    assert set(ans) == set(ipinfo.FIELDS)
    assert (ans["city"], ans["region"], ans["country"], ans["loc"], ans["org"]) == \
        (geo["city"], geo["region"], geo["country"], geo["loc"], geo["org"])
    assert ans["city"] == "Boston" and ans["org"].startswith("AS64496 ")
    cloud = ipinfo.answer_for("10.20.30.11", db, public)
    assert cloud["city"] == "Ashburn" and cloud["ip"] == "10.20.30.11"


@pytest.mark.parametrize("address", ["192.168.1.100", "192.168.1.1", "127.0.0.1", "169.254.1.1", "fe80::1"])
def test_private_and_reserved_addresses_are_bogons_exactly_as_ipinfo(db, public, address):
    assert ipinfo.answer_for(address, db, public) == {"ip": address, "bogon": True}


def test_without_the_emulations_public_space_the_isp_address_is_a_bogon(db):
    # 100.64.0.0/10 is shared address space (RFC 6598): a bogon on the real Internet.
    assert ipinfo.answer_for("100.64.0.2", db, ()) == {"ip": "100.64.0.2", "bogon": True}


def test_a_public_address_outside_the_database_has_only_its_ip(db, public):
    assert ipinfo.answer_for("8.8.8.8", db, public) == {"ip": "8.8.8.8"}


def test_home_lan_is_public_when_routed(tmp_path):
    path = database_for("internet", directory=str(tmp_path)).path
    with GeoDatabase(path) as d:
        pub = ipinfo.public_networks(InternetTopo().routed_prefixes())
        assert ipinfo.answer_for("192.168.1.10", d, pub)["city"] == "Cambridge"


@pytest.fixture
def server(db, public, monkeypatch):
    monkeypatch.setattr(ipinfo, "BARRIER_TIMEOUT_S", 2.0)
    out = io.StringIO()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ipinfo.make_handler(db, public, out, threading.Lock()))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", out
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), err.read().decode()


def test_endpoints(server):
    base, out = server
    assert _get(base + "/ip")[::2] == (200, "127.0.0.1\n")
    assert json.loads(_get(base + "/json")[2]) == {"ip": "127.0.0.1", "bogon": True}
    status, ctype, body = _get(base + "/10.20.30.11/json")
    assert status == 200 and ctype.startswith("application/json") and json.loads(body)["city"] == "Ashburn"
    assert _get(base + "/10.20.30.11/city")[::2] == (200, "Ashburn\n")
    assert _get(base + "/100.64.0.2/org")[2].startswith("AS64496 ")
    assert _get(base + "/city")[0] == 404                    # a bogon has no city
    assert _get(base + "/nonsense/json")[0] == 404
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["peer_ip"] == "127.0.0.1" and lines[0]["path"] == "/ip" and lines[0]["status"] == 200
    assert all(isinstance(line["peer_port"], int) for line in lines)


def test_together_holds_answers_until_all_are_in(server):
    base, out = server
    results = []
    threads = [threading.Thread(target=lambda: results.append(_get(base + "/ip?together=3&group=g")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert [r[0] for r in results] == [200, 200, 200]
    assert _get(base + "/ip?together=2&group=alone")[0] == 200     # released by the deadline
    # threads finish in any order: group the lines, not their order
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted((line["path"], line["together"]) for line in lines) == \
        [("/ip?together=2&group=alone", False)] + [("/ip?together=3&group=g", True)] * 3


def test_command_line_serves_and_says_ready(db_path):
    proc = subprocess.Popen([sys.executable, "-m", "wirelab.apps.ipinfo", "serve", "--db", db_path,
                             "--bind", "127.0.0.1", "--port", "0", "--public", "100.64.0.0/10"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith(ipinfo.READY_PREFIX + " ")
        port = json.loads(first.split(" ", 1)[1])["port"]
        assert _get(f"http://127.0.0.1:{port}/100.64.0.2/city")[2] == "Boston\n"
        assert json.loads(proc.stdout.readline())["path"] == "/100.64.0.2/city"
    finally:
        proc.terminate()
        proc.wait(10)


def test_command_line_errors_are_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "wirelab.apps.ipinfo", "lookup", "--db",
                           str(tmp_path / "none.mmdb"), "1.2.3.4"], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no such database" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "wirelab.apps.ipinfo", "lookup", "--db", "x", "not-an-ip"],
                         cwd=REPO, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "is not an IP address" in bad.stderr
    helped = subprocess.run([sys.executable, "-m", "wirelab.apps.ipinfo", "serve", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "--public" in helped.stdout
