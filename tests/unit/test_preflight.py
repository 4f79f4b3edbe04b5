"""Preflight: one line and a distinct exit code for each missing prerequisite."""

import os
import re

import pytest

from wirelab.net import preflight
from wirelab.errors import MissingToolError, NotRootError, PreflightError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    with pytest.raises(MissingToolError, match=r"'no-such-tool-xyz' not found \(the demo "
                       r"runs it\): apt-get install pkgname") as err:
        preflight.require_basics({"no-such-tool-xyz": ("pkgname", "the demo runs it")})
    assert err.value.exit_code == 5


def _sources():
    """The text of every Python file that runs tools: ours and Mininet's."""
    import mininet
    roots = [os.path.join(REPO, "wirelab"), os.path.join(REPO, "experiments"),
             os.path.dirname(mininet.__file__)]
    text = []
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            text += [open(os.path.join(folder, f), errors="replace").read()
                     for f in files if f.endswith(".py") and f != "preflight.py"]
    return "\n".join(text)


def test_checks_only_tools_the_code_runs():
    """Every tool preflight checks is named as a command somewhere (an argv
    element like "nft", or at the start of a Mininet command string)."""
    code = _sources()
    unused = [tool for tool in {**preflight.REQUIRED_TOOLS, **preflight.FEATURE_TOOLS}
              if not re.search(rf"""["']{re.escape(tool)}[ "']""", code)]
    assert unused == [], f"preflight checks tools nothing runs: {unused}"


def test_required_tools_are_what_building_needs():
    assert set(preflight.REQUIRED_TOOLS) == {"mnexec", "ip", "ifconfig"}
    assert preflight.missing_tools(preflight.REQUIRED_TOOLS) == {} or os.geteuid() != 0


def test_exit_codes_are_distinct():
    codes = [NotRootError.exit_code, PreflightError.exit_code, MissingToolError.exit_code]
    assert len(set(codes)) == 3


def test_main_prints_one_line(monkeypatch, capsys):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    assert preflight.main([]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wirelab: error:")
