"""HTML reports render in a real headless browser (Debian's chromium): tables present, no broken images."""

import re
import shutil
import subprocess

import pytest

from senet.analysis.html_report import Section, render_html, write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
)


def render_in_browser(path, tmp_path):
    """The DOM after load, as headless Chromium sees it."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom"]  # fmt: skip
    proc = subprocess.run([CHROMIUM, *flags, path.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def make_png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 2))
    plt.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)
    return path


@needs_browser
def test_report_renders_with_tables_and_images(tmp_path):
    png = make_png(tmp_path / "curve.png")
    rows = [{"model": "se_resnet20", "top-1 %": 93.1}, {"model": "resnet20", "top-1 %": 92.4}]
    page = write_html(tmp_path / "report.html", "A run", [Section("Results", "text", rows, [png, png])])
    dom = render_in_browser(page, tmp_path)
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-images="2"' in body and 'data-broken-images="0"' in body
    assert dom.count("<table>") == 1 and "se_resnet20" in dom


@needs_browser
def test_broken_image_is_detected(tmp_path):
    page = tmp_path / "broken.html"
    text = render_html("x", [Section("s", images=[])]).replace(
        "</body>", '<img src="data:image/png;base64,AAAA"></body>'
    )
    page.write_text(text)
    assert 'data-broken-images="1"' in render_in_browser(page, tmp_path)


def test_missing_image_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        render_html("x", [Section("s", images=[tmp_path / "nope.png"])])


def test_text_is_escaped():
    assert "<script>alert" not in render_html("t", [Section("<script>alert(1)</script>")])
