"""Preflight: one line and a distinct exit code for each missing prerequisite."""

import pytest

from wirelab.net import preflight
from wirelab.errors import MissingToolError, NotRootError, PreflightError


def test_not_root(monkeypatch):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="needs root") as err:
        preflight.require_basics()
    assert err.value.exit_code == 4


def test_mininet_missing(monkeypatch):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 0)
    monkeypatch.setattr(preflight, "mininet_importable", lambda: False)
    with pytest.raises(PreflightError, match="mininet") as err:
        preflight.require_basics()
    assert err.value.exit_code == 3


def test_tool_missing(monkeypatch):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 0)
    monkeypatch.setattr(preflight, "mininet_importable", lambda: True)
    with pytest.raises(MissingToolError, match="'no-such-tool-xyz' not found: apt-get install pkgname") as err:
        preflight.require_basics({"no-such-tool-xyz": "pkgname"})
    assert err.value.exit_code == 5


def test_exit_codes_are_distinct():
    codes = [NotRootError.exit_code, PreflightError.exit_code, MissingToolError.exit_code]
    assert len(set(codes)) == 3


def test_main_prints_one_line(monkeypatch, capsys):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    assert preflight.main([]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wirelab: error:")
