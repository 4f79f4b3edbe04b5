"""``wirelab geolocate``: help, human and JSON lines, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def geolocate(tmp_path):
    env = {**os.environ, "WIRELAB_GEO_CACHE": str(tmp_path / "geo-cache")}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "wirelab", "geolocate", *args],
                              capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    return run


def test_help_and_the_overview(geolocate):
    done = geolocate("--help")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: wirelab geolocate ")
    for words in ("--db FILE", "--json", "--build-only", "--topo SPEC", "bogons"):
        assert words in done.stdout, words
    top = subprocess.run([sys.executable, "-m", "wirelab", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert "\n  geolocate " in top.stdout


def test_human_lines(geolocate):
    done = geolocate("10.20.30.10", "10.99.0.1", "192.0.2.1")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        "10.20.30.10  10.20.30.0/24  Ashburn, Virginia, US  39.0400,-77.4900  AS64499 wirelab Cloud"
        "  [cloudgw, emulated]",
        "10.99.0.1  10.0.0.0/8  Atlanta, Georgia, US  33.7500,-84.3900  AS64500 wirelab Corp"
        "  [corpgw, emulated]",
        "192.0.2.1  192.0.2.0/24  bogon: documentation TEST-NET-1 (RFC 5737)"]


def test_json_lines_and_exit_1_for_an_address_in_no_database(geolocate):
    done = geolocate("10.20.1.2", "::1", "8.8.8.8", "--json")
    assert done.returncode == 1 and done.stderr == ""
    first, loopback, public = (json.loads(line) for line in done.stdout.splitlines())
    assert (first["city"], first["prefix"], first["loc"]) == ("Champaign", "10.20.1.0/24", "40.1200,-88.2400")
    assert loopback == {"ip": "::1", "bogon": True, "prefix": "::1/128", "reason": "loopback (RFC 4291)"}
    assert public == {"ip": "8.8.8.8", "found": False, "prefix": None}


def test_another_topology(geolocate):
    done = geolocate("--topo", "zoo,Abilene", "10.64.16.2", "--json")
    if "zoo.py" in done.stderr:
        pytest.skip("topologies/zoo.py is not there")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["city"] == "New York"


def test_build_only(geolocate):
    done = geolocate("--build-only", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["topology"] == "internet" and figures["built"] is True
    assert os.path.getsize(figures["path"]) == figures["bytes"] and figures["networks"] > 20
    again = json.loads(geolocate("--build-only", "--json").stdout)
    assert again["built"] is False and again["path"] == figures["path"]


@pytest.mark.parametrize("args, words", [
    (["10.0.0.256"], "'10.0.0.256' is not an IPv4 or IPv6 address"),
    (["10.1.0.2", "example.com"], "'example.com' is not an IPv4 or IPv6 address"),
    ([], "name at least one ADDRESS"),
    (["1.1.1.1", "--db", "/nonexistent.mmdb"], "/nonexistent.mmdb: no such database file"),
    (["1.1.1.1", "--db", os.path.join(REPO, "README.md")], "README.md: not a MaxMind DB (.mmdb) file"),
    (["--all"], "--all goes with --build-only"),
    (["1.1.1.1", "--db", "x.mmdb", "--topo", "internet"], "--topo and --all choose one of ours"),
    (["1.1.1.1", "--topo", "line,3"], "line has no geography"),
    (["1.1.1.1", "--topo", "nowhere"], "unknown topology 'nowhere'"),
])
def test_errors_are_one_line_exit_2(geolocate, args, words):
    done = geolocate(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("wirelab geolocate: error: ") and words in lines[0], lines[0]
    assert done.stdout == "" and "Traceback" not in done.stderr
