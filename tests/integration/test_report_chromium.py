"""The HTML report renders in a real browser: headless Chromium (Debian's
``chromium``, installed by scripts/test.sh) opens a report built from a small
fake results tree, with real matplotlib PNGs.

Two views: ``--dump-dom`` of a copy of the page with a probe script that, on
load, writes how many ``<img>`` decoded (``naturalWidth > 0``) into the DOM;
and ``--screenshot``, where the plots' flat colour must cover the area of the
images. Every run has its own profile folder (removed by tmp_path) and a timeout.
"""

import os
import re
import shutil
import subprocess

import pytest

import fake_results
from wirelab.experiment import report

CHROMIUM_TIMEOUT_S = 90
WINDOW = (1200, 2000)
# Written into the test's copy of the page only; the report itself has no script.
PROBE = ('<script>window.addEventListener("load", function () {'
         ' var all = Array.from(document.images);'
         ' var ok = all.filter(function (i) { return i.complete && i.naturalWidth > 0; });'
         ' var d = document.createElement("div"); d.id = "decoded";'
         ' d.textContent = ok.length + "/" + all.length + " " +'
         ' ok.map(function (i) { return i.naturalWidth + "x" + i.naturalHeight; }).join(",");'
         ' document.body.appendChild(d); });</script>')


def chromium_binary():
    return shutil.which("chromium") or shutil.which("chromium-browser")


pytestmark = pytest.mark.skipif(
    chromium_binary() is None,
    reason="chromium is not installed: scripts/test.sh installs it (apt-get install chromium)")


def chromium(tmp_path, *args):
    """Run headless Chromium with a profile of its own, removed afterwards."""
    profile = tmp_path / "chromium-profile"
    argv = [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--no-first-run", f"--user-data-dir={profile}", *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture
def rendered(tmp_path):
    report_dir = fake_results.make_tree(str(tmp_path / "tree"))
    stamp, results = report.load_summary(report_dir)
    report.write_pages(report_dir, stamp, results)
    return report_dir, results


def test_report_renders_with_its_images_in_chromium(tmp_path, rendered):
    report_dir, results = rendered
    with open(os.path.join(report_dir, "index.html"), encoding="utf-8") as f:
        page = f.read()
    probe = os.path.join(report_dir, "probe.html")   # beside index.html: same relative links
    with open(probe, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", f"file://{probe}").stdout
    decoded = re.search(r'<div id="decoded">(\d+)/(\d+) ([^<]*)</div>', dom)
    assert decoded, dom[-1500:]
    assert decoded.group(1) == decoded.group(2) == "2", decoded.group(0)
    assert decoded.group(3) == "480x240,480x240"     # matplotlib's 6x3 inches at 80 dpi
    for r in results:
        for c in r.claims:                             # every claim row made it into the DOM
            name = c.name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            assert f"<td>{name}</td>" in dom, c.name
    assert dom.count('<tr class="claim fail">') == 1
    assert "<b>bold</b>" not in dom.split('<div id="decoded">')[0]


def test_report_screenshot_shows_the_plots(tmp_path, rendered):
    import numpy
    from PIL import Image
    report_dir, _ = rendered
    shot = tmp_path / "page.png"
    chromium(tmp_path, f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
             f"file://{os.path.join(report_dir, 'index.html')}")
    with Image.open(shot) as img:
        assert img.size == WINDOW
        pixels = numpy.asarray(img.convert("RGB"))
    plot_colour = int(numpy.all(pixels == fake_results.PLOT_RGB, axis=-1).sum())
    not_white = int(numpy.any(pixels != 255, axis=-1).sum())
    # Two 480x240 plots, less axes and text: most of their 230,400 pixels.
    assert plot_colour > 150_000, plot_colour
    assert not_white > plot_colour
