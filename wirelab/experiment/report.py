"""The suite's report: ``report.md`` and one self-contained ``index.html``.

Both are rendered from ``summary.json`` (one :class:`ExperimentResult` per
experiment: status, exit code, seconds, claims) and from the experiment folders
it names (plots, pcaps, case folders, ``metrics.json``), so ``wirelab report
DIR`` renders an old report folder again. The HTML page needs nothing beside
it: the CSS is inline, every PNG plot is embedded as a ``data:`` URI, and the
pcaps, case folders and ``metrics.json`` are relative links (valid while the
page stays at ``results/report/<time>/``). No JavaScript.
"""

import base64
import dataclasses
import glob
import html
import json
import os
import typing
import urllib.parse

from wirelab.experiment.claims import Claim, short
from wirelab.experiment.evidence import EvidenceError, to_jsonable, write_json

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")
# A claim value longer than this is shown shortened, the whole of it folded
# below (a tcp_recovery "measured" can be a dict of 20 figures).
INLINE_VALUE_CHARS = 120
# Up to this many case/capture folders are listed open; more start folded.
OPEN_FOLDER_ROWS = 12


@dataclasses.dataclass
class ExperimentResult:
    """One experiment's line of the suite: what ran, how it ended, its claims."""

    experiment: str
    status: str                  # pass / fail / error / timeout (from metrics.json or the exit)
    exit_code: typing.Optional[int]
    claims_passed: int
    claims_total: int
    seconds: float
    results: str                 # the experiment's folder, relative to the repository root
    error: typing.Optional[str] = None
    failed_claims: list = dataclasses.field(default_factory=list)
    plots: list = dataclasses.field(default_factory=list)
    claims: list = dataclasses.field(default_factory=list)   # of Claim

    @property
    def ok(self):
        return self.status == "pass"

    @classmethod
    def from_run(cls, name, out_dir, exit_code, seconds, root):
        """Summarise a finished run from its folder (``metrics.json``) and exit
        code (None: timed out). ``root``: the folder ``results`` is relative to."""
        metrics = _read_json(os.path.join(out_dir, "metrics.json"))
        claims = [Claim.from_dict(c) for c in metrics.get("claims", [])]
        status = metrics.get("status") or ("timeout" if exit_code is None else "error")
        if exit_code not in (0, 7) and status == "pass":
            status = "error"   # the verdict was written, then something failed
        return cls(experiment=name, status=status, exit_code=exit_code,
                   claims_passed=sum(1 for c in claims if c.ok), claims_total=len(claims),
                   seconds=round(seconds, 1), results=os.path.relpath(out_dir, root),
                   error=metrics.get("error"),
                   failed_claims=[c.name for c in claims if not c.ok],
                   plots=[os.path.relpath(p, out_dir) for p in find_files(out_dir, (".png",))],
                   claims=claims)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["claims"] = [to_jsonable(c.to_dict()) for c in self.claims]
        return d

    @classmethod
    def from_dict(cls, d):
        try:
            values = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
            values["claims"] = [Claim.from_dict(c) for c in d.get("claims") or []]
            return cls(**values)
        except (TypeError, KeyError, AttributeError) as exc:
            raise EvidenceError(f"summary.json: an experiment entry is malformed: {exc}") from None


def _read_json(path):
    try:
        with open(path) as f:
            value = json.load(f)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def find_files(folder, suffixes):
    """Files under ``folder`` whose names end with one of ``suffixes``, sorted."""
    found = []
    for d, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(d, f) for f in sorted(files) if f.endswith(suffixes)]
    return found


# -- summary.json: the report folder's record ----------------------------------------
def write_summary(report_dir, stamp, results):
    write_json(os.path.join(report_dir, "summary.json"),
               {"stamp": stamp, "experiments": [r.to_dict() for r in results]})


def load_summary(report_dir):
    """(stamp, [ExperimentResult]) from ``report_dir/summary.json``."""
    path = os.path.join(report_dir, "summary.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise EvidenceError(f"{path}: missing: not a report folder (results/report/<time>/)") from None
    except (OSError, ValueError) as exc:
        raise EvidenceError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("experiments"), list):
        raise EvidenceError(f"{path}: no list of experiments")
    return data.get("stamp") or os.path.basename(report_dir), [
        ExperimentResult.from_dict(e) for e in data["experiments"]]


def newest_report(results_root):
    """The newest ``results_root/report/<time>/`` holding a summary.json, or None."""
    found = sorted(glob.glob(os.path.join(results_root, "report", "*", "summary.json")),
                   key=os.path.getmtime)
    return os.path.dirname(found[-1]) if found else None


def root_of(report_dir):
    """The folder a summary's ``results`` paths are relative to: the one
    holding ``results/`` (report_dir is ``<root>/results/report/<time>``)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(report_dir))))


def experiment_folder(result, report_dir):
    return os.path.normpath(os.path.join(root_of(report_dir), result.results))


# -- what an experiment folder holds, for links ----------------------------------------
@dataclasses.dataclass
class FolderContents:
    """The files of one experiment folder the report shows or links."""

    folder: str
    exists: bool
    plots: list            # absolute paths of PNGs
    groups: list           # (subfolder relative to folder, is_case, [capture paths])
    metrics: typing.Optional[str]

    @classmethod
    def scan(cls, folder):
        if not os.path.isdir(folder):
            return cls(folder, False, [], [], None)
        captures = find_files(folder, CAPTURE_SUFFIXES)
        case_dirs = {os.path.dirname(p) for p in find_files(folder, ("case.json",))}
        dirs = sorted({os.path.dirname(p) for p in captures} | case_dirs)
        groups = [(os.path.relpath(d, folder), d in case_dirs,
                   [p for p in captures if os.path.dirname(p) == d]) for d in dirs]
        metrics = os.path.join(folder, "metrics.json")
        return cls(folder, True, find_files(folder, (".png",)), groups,
                   metrics if os.path.exists(metrics) else None)


# -- writing both pages -----------------------------------------------------------------
def write_pages(report_dir, stamp, results):
    """Write ``report.md`` and ``index.html`` into ``report_dir``; return their paths."""
    pages = {"report.md": render_markdown(results, stamp, report_dir),
             "index.html": render_html(results, stamp, report_dir)}
    paths = []
    for name, text in pages.items():
        path = os.path.join(report_dir, name)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def rerender(report_dir):
    """``wirelab report DIR``: both pages again from summary.json and the folders."""
    stamp, results = load_summary(report_dir)
    return write_pages(report_dir, stamp, results)


def table(results):
    """The plain-text summary the suite prints at the end."""
    width = max([len("experiment")] + [len(r.experiment) for r in results])
    lines = [f"{'experiment':{width}} {'status':11} {'claims':>9} {'seconds':>8}  results", "-" * (width + 64)]
    for r in results:
        claims = f"{r.claims_passed}/{r.claims_total}"
        lines.append(f"{r.experiment:{width}} {r.status:11} {claims:>9} {r.seconds:>8}  {r.results}")
    return "\n".join(lines)


def _cell_text(value):
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


# -- markdown -----------------------------------------------------------------------------
def render_markdown(results, stamp, report_dir):
    out = [f"# wirelab report {stamp}", "",
           "Each experiment ran on its default topology; every claim below was checked "
           "from evidence saved in its results folder (params.json, pcaps, logs, metrics.json). "
           "The same report with the plots embedded: `index.html`.",
           "", "| experiment | status | claims | seconds | results |", "|---|---|---|---|---|"]
    for r in results:
        out.append(f"| {r.experiment} | {r.status} | {r.claims_passed}/{r.claims_total} "
                   f"| {r.seconds} | `{r.results}` |")
    for r in results:
        out += ["", f"## {r.experiment}", ""]
        if r.error:
            out += [f"Error: {_md_cell(r.error)}", ""]
        if r.claims:
            out += ["| claim | result | measured | expected | tolerance |", "|---|---|---|---|---|"]
            for c in r.claims:
                cells = [_md_cell(short(_cell_text(getattr(c, k)), 80))
                         for k in ("measured", "expected", "tolerance")]
                out.append(f"| {_md_cell(c.name)} | {'PASS' if c.ok else 'FAIL'} | " + " | ".join(cells) + " |")
        for png in FolderContents.scan(experiment_folder(r, report_dir)).plots:
            rel = os.path.relpath(png, report_dir)
            out += ["", f"![{os.path.basename(png)}]({urllib.parse.quote(rel)})"]
    return "\n".join(out) + "\n"


def _md_cell(text):
    """Literal text in a markdown table cell: HTML escaped (a renderer would
    otherwise interpret tags), pipes escaped, on one line."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


# -- HTML -----------------------------------------------------------------------------------
CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1150px; padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; width: 100%; margin: .8em 0; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: 4px 7px; text-align: left; vertical-align: top; }
th { background: #f1f1f3; }
tr.fail td { background: #fde4e2; }
.badge { display: inline-block; min-width: 4.5em; text-align: center; font-weight: 600;
         border-radius: 3px; padding: 1px 6px; color: #fff; }
.badge.pass { background: #1f7a35; } .badge.fail { background: #b3261e; }
.badge.other { background: #8a5a00; }
.error { color: #b3261e; font-family: ui-monospace, monospace; white-space: pre-wrap; }
.muted { color: #666; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; }
pre { white-space: pre-wrap; word-break: break-word; margin: .3em 0; }
details summary { cursor: pointer; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 13px; }
"""


def esc(text):
    return html.escape(str(text), quote=True)


def href(path, report_dir):
    """A relative, URL-quoted link from the report page to ``path``."""
    rel = os.path.relpath(path, report_dir).replace(os.sep, "/")
    return urllib.parse.quote(rel)


def _badge(status):
    kind = status if status in ("pass", "fail") else "other"
    return f'<span class="badge {kind}">{esc(status.upper())}</span>'


def _value_html(value):
    text = _cell_text(value)
    if len(text) <= INLINE_VALUE_CHARS:
        return esc(text)
    full = text if isinstance(value, str) else json.dumps(value, indent=1, default=str)
    return (f"<details><summary>{esc(short(text, INLINE_VALUE_CHARS))}</summary>"
            f"<pre>{esc(full)}</pre></details>")


def _png_data_uri(path):
    """The PNG as a data: URI, or None when the file is not a PNG."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _size(path):
    try:
        n = os.path.getsize(path)
    except OSError:
        return "?"
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def render_html(results, stamp, report_dir):
    passed = sum(r.ok for r in results)
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>wirelab report {esc(stamp)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           f"<h1>wirelab report {esc(stamp)}</h1>",
           f'<p class="muted">{passed} of {len(results)} experiments passed. Every claim was '
           "checked from the evidence saved in the experiment's results folder; "
           "<code>wirelab verify FOLDER</code> checks a folder again without root.</p>",
           '<h2 id="overview">Overview</h2>',
           '<table class="overview"><tr><th>experiment</th><th>status</th><th>claims</th>'
           "<th>seconds</th><th>exit</th><th>error</th></tr>"]
    for i, r in enumerate(results):
        row_class = "" if r.ok else ' class="fail"'
        out.append(f'<tr{row_class}><td><a href="#exp-{i}">{esc(r.experiment)}</a></td>'
                   f"<td>{_badge(r.status)}</td><td>{r.claims_passed}/{r.claims_total}</td>"
                   f"<td>{esc(r.seconds)}</td><td>{esc('' if r.exit_code is None else r.exit_code)}</td>"
                   f'<td class="error">{esc(r.error or "")}</td></tr>')
    out.append("</table>")
    for i, r in enumerate(results):
        out += _experiment_html(i, r, report_dir)
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _experiment_html(i, r, report_dir):
    folder = experiment_folder(r, report_dir)
    contents = FolderContents.scan(folder)
    out = [f'<section id="exp-{i}">',
           f"<h2>{esc(r.experiment)} {_badge(r.status)}</h2>"]
    facts = [f"{r.claims_passed}/{r.claims_total} claims hold", f"{esc(r.seconds)} s"]
    if contents.exists:
        facts.append(f'results: <a href="{href(folder, report_dir)}/">{esc(r.results)}</a>')
    else:
        facts.append(f'results: <code>{esc(r.results)}</code> <span class="error">(folder missing)</span>')
    if contents.metrics:
        facts.append(f'<a href="{href(contents.metrics, report_dir)}">metrics.json</a>')
    out.append(f'<p>{" &middot; ".join(facts)}</p>')
    if r.error:
        out.append(f'<p class="error">Error: {esc(r.error)}</p>')
    if r.claims:
        out.append("<table class=\"claims\"><tr><th>claim</th><th>result</th><th>measured</th>"
                   "<th>expected</th><th>tolerance</th><th>evidence</th></tr>")
        for c in r.claims:
            out.append(f'<tr class="claim {"pass" if c.ok else "fail"}"><td>{esc(c.name)}</td>'
                       f'<td>{_badge("pass" if c.ok else "fail")}</td>'
                       f"<td>{_value_html(c.measured)}</td><td>{_value_html(c.expected)}</td>"
                       f"<td>{_value_html(c.tolerance)}</td><td>{_value_html(c.evidence)}</td></tr>")
        out.append("</table>")
    else:
        out.append('<p class="muted">No claims were recorded.</p>')
    for png in contents.plots:
        rel = os.path.relpath(png, folder)
        uri = _png_data_uri(png)
        if uri is None:
            out.append(f'<p class="error">{esc(rel)}: not a PNG file</p>')
            continue
        out.append(f'<figure><img src="{uri}" alt="{esc(rel)}">'
                   f"<figcaption>{esc(rel)}</figcaption></figure>")
    if contents.groups:
        n_captures = sum(len(captures) for _, _, captures in contents.groups)
        # A long list (routing has one folder per router and prefix) starts folded.
        opened = " open" if len(contents.groups) <= OPEN_FOLDER_ROWS else ""
        out.append(f"<details{opened}><summary><strong>Cases and captures</strong>: {len(contents.groups)} "
                   f"folders, {n_captures} captures</summary>")
        out.append("<table class=\"files\"><tr><th>folder</th><th>captures</th></tr>")
        for rel, is_case, captures in contents.groups:
            d = os.path.join(folder, rel)
            name = esc(rel if rel != "." else "(top level)")
            cell = f'<a href="{href(d, report_dir)}/">{name}</a>'
            if is_case:
                cell += f' (<a href="{href(os.path.join(d, "case.json"), report_dir)}">case.json</a>)'
            links = ", ".join(f'<a href="{href(p, report_dir)}">{esc(os.path.basename(p))}</a> '
                              f'<span class="muted">{_size(p)}</span>' for p in captures)
            out.append(f"<tr><td>{cell}</td><td>{links}</td></tr>")
        out.append("</table></details>")
    out.append("</section>")
    return out
