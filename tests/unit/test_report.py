"""The report pages (wirelab/experiment/report.py) on a small fake results tree:
HTML escaping, embedded plots, relative links, failed rows, re-rendering."""

import base64
import html.parser
import json
import os
import urllib.parse

import pytest

import fake_results
from wirelab import cli
from wirelab.experiment import report
from wirelab.experiment.evidence import EvidenceError


class Page(html.parser.HTMLParser):
    """What a browser would see: tags, images, links, table rows, text."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.images, self.links, self.rows, self.text = [], [], [], [], []
        self._row = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "tr":
            self._row = {"class": attrs.get("class", ""), "cells": []}
            self.rows.append(self._row)
        elif tag == "td" and self._row is not None:
            self._row["cells"].append("")

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and self._row["cells"]:
            self._row["cells"][-1] += data


@pytest.fixture
def tree(tmp_path):
    report_dir = fake_results.make_tree(str(tmp_path))
    stamp, results = report.load_summary(report_dir)
    report.write_pages(report_dir, stamp, results)
    with open(os.path.join(report_dir, "index.html"), encoding="utf-8") as f:
        page = f.read()
    return report_dir, results, page


def test_html_escapes_every_value(tree):
    _, _, page = tree
    assert "<script" not in page and "<b>" not in page    # no JavaScript, no injected tags
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "campus: tcpdump &lt;stopped&gt; &amp; lost 1" in page
    parsed = Page(page)
    text = "".join(parsed.text)
    assert f"escaped {fake_results.NASTY}" in text       # the browser shows the original text
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p",
                                "code", "table", "tr", "th", "td", "a", "span", "section", "details",
                                "summary", "pre", "figure", "img", "figcaption", "strong"}


def test_every_claim_row_and_failed_rows_highlighted(tree):
    _, results, page = tree
    parsed = Page(page)
    claim_rows = [r for r in parsed.rows if r["class"].startswith("claim ")]
    names = [c.name for r in results for c in r.claims]
    assert [r["cells"][0] for r in claim_rows] == names
    assert [r["class"] for r in claim_rows] == ["claim pass" if c.ok else "claim fail"
                                                for r in results for c in r.claims]
    assert "tr.fail td { background" in page
    overview = [r for r in parsed.rows if r["cells"] and r["cells"][0] in ("routing", "traceroute")]
    assert [(r["cells"][0], r["cells"][1], r["cells"][2], r["class"]) for r in overview] == [
        ("routing", "PASS", "3/3", ""), ("traceroute", "FAIL", "1/2", "fail")]
    long_value = next(r for r in claim_rows if r["cells"][0] == "long value")
    assert '"figure_39": 58.5' in long_value["cells"][2]   # folded, but all there


def test_plots_embedded_as_data_uris(tree):
    report_dir, _, page = tree
    parsed = Page(page)
    pngs = sorted(fake_results_pngs(report_dir))
    assert len(parsed.images) == len(pngs) == 2
    embedded = []
    for img in parsed.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        embedded.append(base64.b64decode(img["src"][len(prefix):]))
    assert sorted(embedded) == sorted(open(p, "rb").read() for p in pngs)
    assert [img["alt"] for img in parsed.images] == ["lpm.png", "rtt.png"]
    assert "http" not in "".join(i["src"][:30] for i in parsed.images)
    assert "<link" not in page and 'src="http' not in page


def fake_results_pngs(report_dir):
    root = report.root_of(report_dir)
    return report.find_files(os.path.join(root, "results"), (".png",))


def test_links_are_relative_and_resolve(tree):
    report_dir, _, page = tree
    links = [h for h in Page(page).links if not h.startswith("#")]
    targets = {os.path.normpath(os.path.join(report_dir, urllib.parse.unquote(h))) for h in links}
    assert all(not h.startswith(("/", "http", "file:")) for h in links)
    assert all(os.path.exists(t) for t in targets), [t for t in targets if not os.path.exists(t)]
    names = {os.path.relpath(t, report.root_of(report_dir)) for t in targets}
    stamp = fake_results.STAMP
    for expected in (f"results/routing/{stamp}/egress.pcap", f"results/routing/{stamp}/cases/a/up.pcap",
                     f"results/routing/{stamp}/cases/a/case.json", f"results/routing/{stamp}/cases/a",
                     f"results/routing/{stamp}/metrics.json", f"results/traceroute/{stamp}/metrics.json",
                     f"results/routing/{stamp}"):
        assert expected in names, expected
    anchors = [h for h in Page(page).links if h.startswith("#")]
    assert anchors == ["#exp-0", "#exp-1"] and 'id="exp-1"' in page


def test_link_with_odd_characters_is_quoted(tmp_path):
    report_dir = fake_results.make_tree(str(tmp_path))
    stamp, results = report.load_summary(report_dir)
    folder = report.experiment_folder(results[0], report_dir)
    os.makedirs(os.path.join(folder, "case #1 & <x>"))
    with open(os.path.join(folder, "case #1 & <x>", "a b.pcap"), "wb") as f:
        f.write(b"")
    page = report.render_html(results, stamp, report_dir)
    assert 'href="../../routing/20250101T000000Z/case%20%231%20%26%20%3Cx%3E/a%20b.pcap"' in page
    assert "case #1 &amp; &lt;x&gt;" in page


def test_markdown_escaped_and_links_plots(tree):
    report_dir, _, _ = tree
    md = open(os.path.join(report_dir, "report.md")).read()
    assert "| routing | pass | 3/3 | 1.5 | `results/routing/20250101T000000Z` |" in md
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "![lpm.png](../../routing/20250101T000000Z/lpm.png)" in md
    assert "| TTL at receiver | FAIL | 61 | 60 | 0 |" in md


def test_long_folder_lists_start_folded(tmp_path):
    report_dir = fake_results.make_tree(str(tmp_path))
    stamp, results = report.load_summary(report_dir)
    assert "<details open><summary><strong>Cases and captures</strong>: 2 folders, 2 captures" in \
        report.render_html(results, stamp, report_dir)
    folder = report.experiment_folder(results[0], report_dir)
    for i in range(report.OPEN_FOLDER_ROWS):
        os.makedirs(os.path.join(folder, "many", str(i)))
        open(os.path.join(folder, "many", str(i), "x.pcap"), "wb").close()
    page = report.render_html(results, stamp, report_dir)
    assert f"<details><summary><strong>Cases and captures</strong>: {report.OPEN_FOLDER_ROWS + 2} folders" in page
    assert 'href="../../routing/20250101T000000Z/many/11/x.pcap"' in page


def test_missing_folder_and_broken_png_do_not_stop_the_page(tmp_path):
    report_dir = fake_results.make_tree(str(tmp_path))
    stamp, results = report.load_summary(report_dir)
    folder = report.experiment_folder(results[1], report_dir)
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)
    with open(os.path.join(report.experiment_folder(results[0], report_dir), "bad.png"), "w") as f:
        f.write("not a png")
    page = report.render_html(results, stamp, report_dir)
    assert "(folder missing)" in page and "bad.png: not a PNG file" in page
    assert len(Page(page).images) == 1


def test_rerender_is_stable_and_cli_writes_both(tree, capsys):
    report_dir, _, page = tree
    os.remove(os.path.join(report_dir, "index.html"))
    assert cli.main(["report", report_dir]) == 0
    out = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in out] == ["report.md", "index.html"]
    assert open(os.path.join(report_dir, "index.html"), encoding="utf-8").read() == page


def test_summary_round_trip_and_errors(tmp_path, tree):
    report_dir, results, _ = tree
    assert [report.ExperimentResult.from_dict(r.to_dict()) for r in results] == results
    report.write_summary(str(tmp_path), "S", results)
    assert report.load_summary(str(tmp_path)) == ("S", results)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(EvidenceError, match="summary.json: no list of experiments"):
        report.load_summary(str(tmp_path))
    (tmp_path / "summary.json").write_text(json.dumps({"experiments": [{"experiment": "x"}]}))
    with pytest.raises(EvidenceError, match="an experiment entry is malformed"):
        report.load_summary(str(tmp_path))


def test_newest_report(tmp_path):
    assert report.newest_report(str(tmp_path / "results")) is None
    old = fake_results.make_tree(str(tmp_path), stamp="20240101T000000Z")
    new = os.path.join(os.path.dirname(old), "20250101T000000Z")
    os.makedirs(new)
    os.replace(os.path.join(old, "summary.json"), os.path.join(new, "summary.json"))
    assert report.newest_report(str(tmp_path / "results")) == new


def test_from_run_statuses(tmp_path):
    out = tmp_path / "results" / "x" / "T"
    out.mkdir(parents=True)
    timeout = report.ExperimentResult.from_run("x", str(out), None, 9.99, str(tmp_path))
    assert (timeout.status, timeout.claims_total, timeout.seconds) == ("timeout", 0, 10.0)
    (out / "metrics.json").write_text(json.dumps({"status": "pass", "claims": [{"name": "a", "ok": True}]}))
    crashed = report.ExperimentResult.from_run("x", str(out), 1, 1, str(tmp_path))
    assert crashed.status == "error" and not crashed.ok
