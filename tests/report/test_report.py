"""`mlproxy report` end to end: models trained through the proxy, the page written
as the user (through the proxy and straight to Postgres), then opened in headless
Chromium with no network: no console errors, every figure in the DOM, a non-blank
screenshot, hostile names shown as text. Privileges apply: a stranger gets the
catalog's 42501 and no page."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from tests.report.conftest import (GRANTEE, HOSTILE_CLASS, HOSTILE_COLUMN, HOSTILE_MODEL, NAMES,
                                   OWNER, STRANGER, wait_for_state)

ROOT = Path(__file__).resolve().parents[2]


def run_report(dsn: str, model: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxy", "report", "--dsn", dsn, model, "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PG")})


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            value = value or ""
            if name in ("src", "href", "xlink:href", "action", "poster", "srcset") and \
                    not value.startswith(("#", "data:")):
                self.found.append((tag, name, value))
            if re.search(r"url\((?!\s*['\"]?#)", value):
                self.found.append((tag, name, value))


def outside_references(dom: str) -> list[tuple[str, str, str]]:
    """Attributes of the rendered DOM that point outside the page."""
    parser = _References()
    parser.feed(dom)
    return parser.found


@dataclass
class Rendered:
    html: str
    dom: str
    screenshot: Path
    console: str


def browse(chromium: str, page: Path, shots: Path) -> Rendered:
    """Open the page in headless Chromium with every network path closed; the DOM
    after load, a full-page screenshot, and what the browser logged."""
    profile = tempfile.mkdtemp(prefix="mlproxy-chromium-")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
              "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", f"--user-data-dir={profile}", "--proxy-server=http://127.0.0.1:9",
              "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
              "--hide-scrollbars"]
    url = page.resolve().as_uri()
    try:
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
        shot = shots / (page.stem + ".png")
        snap = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,3600", url],
                              capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["rm", "-rf", profile], check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert snap.returncode == 0 and shot.is_file(), snap.stderr[-2000:]
    return Rendered(page.read_text(), dom.stdout, shot, dom.stderr + snap.stderr)


def check_page(r: Rendered, figures: list[str]) -> None:
    # rendered with no script error, nothing refused, nothing fetched
    console = [line for line in r.console.splitlines() if "CONSOLE" in line or "Uncaught" in line
               or "Refused to" in line]
    assert not console, console
    # only references inside the page (an SVG's clip paths: #id; images: data:)
    refs = outside_references(r.dom)
    assert not refs, refs
    assert "@import" not in r.html
    assert not re.findall(r"https?://(?!www\.w3\.org/)", r.html)
    assert "<script" not in r.dom.lower() and "<script" not in r.html.lower()
    for fig in figures:
        m = re.search(rf'<figure id="{fig}">\s*<svg[^>]*>(.*?)</svg>', r.dom, re.S)
        assert m, f"figure {fig} missing from the DOM"
        assert m.group(1).count("<path") > 5, f"figure {fig} is empty"
    with Image.open(r.screenshot) as img:
        img = img.convert("RGB")
        assert img.size[0] >= 1000 and img.size[1] >= 1000
        colors = img.getcolors(maxcolors=1 << 20)
        assert colors is None or len(colors) > 50, "the screenshot is blank"


def test_binary_classifier_with_hostile_names(report_world, chromium, tmp_path):
    out = tmp_path / "binary.html"
    done = run_report(report_world.dsn(), NAMES["binary"], out)
    assert done.returncode == 0, done.stderr
    r = browse(chromium, out, tmp_path)
    check_page(r, ["fig-leaderboard", "fig-importance", "fig-confusion", "fig-roc", "fig-pr"])
    # user-chosen names are text, not markup
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in r.dom
    assert "<title>Model report: public.&lt;script&gt;" in r.dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.dom  # the column, in SHOW MODEL's keys
    assert HOSTILE_COLUMN not in r.html and HOSTILE_MODEL not in r.html and HOSTILE_CLASS not in r.html
    assert "<img" not in r.dom
    # the settings are SHOW MODEL's keys, the held-out metrics the catalog's
    for key in ("Model Name", "Model State", "Target Column", "Function Name", "AutoML Job Name"):
        assert f"<th>{key}</th>" in r.html
    assert ">auc<" in r.html and ">accuracy<" in r.html and "rep_binary" in r.html


def test_multiclass_classifier_read_straight_from_postgres(report_world, chromium, tmp_path):
    out = tmp_path / "multiclass.html"
    done = run_report(report_world.direct_dsn(), NAMES["multiclass"], out)
    assert done.returncode == 0, done.stderr
    r = browse(chromium, out, tmp_path)
    check_page(r, ["fig-leaderboard", "fig-importance", "fig-confusion", "fig-roc", "fig-pr"])
    for species in ("setosa", "versicolor", "virginica"):
        assert f"{species} (AUC" not in r.html  # legends are drawn as paths, not text
        assert f"<td>{species}</td>" in r.html  # ... but the per-class table names them
    assert "Classification on held-out rows" in r.html


def test_regressor(report_world, chromium, tmp_path):
    out = tmp_path / "regression.html"
    done = run_report(report_world.dsn(), NAMES["regression"], out)
    assert done.returncode == 0, done.stderr
    r = browse(chromium, out, tmp_path)
    check_page(r, ["fig-leaderboard", "fig-importance", "fig-residuals"])
    assert ">r2<" in r.html and "held-out rows" in r.html


def test_kmeans(report_world, chromium, tmp_path):
    out = tmp_path / "kmeans.html"
    done = run_report(report_world.dsn(), NAMES["kmeans"], out)
    assert done.returncode == 0, done.stderr
    r = browse(chromium, out, tmp_path)
    check_page(r, ["fig-leaderboard", "fig-cluster-sizes", "fig-centroids"])
    assert r.html.count("<td class=\"num\">") >= 3 * 5  # the centroids table: 3 clusters x (id + 4)


def test_grantee_sees_the_model_but_not_its_training_query(report_world, tmp_path):
    out = tmp_path / "grantee.html"
    done = run_report(report_world.dsn(GRANTEE), "rep_iris", out)
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "rep_iris" in html and "fig-confusion" in html
    owner_out = tmp_path / "owner.html"
    assert run_report(report_world.dsn(OWNER), "rep_iris", owner_out).returncode == 0
    assert "<th>Table</th><td>iris</td>" in owner_out.read_text()
    assert "<th>Table</th><td>iris</td>" not in html


@pytest.mark.parametrize("via", ["proxy", "direct"])
def test_a_model_the_user_may_not_see_is_refused(report_world, tmp_path, via):
    out = tmp_path / "stranger.html"
    dsn = report_world.dsn(STRANGER) if via == "proxy" else report_world.direct_dsn(STRANGER)
    done = run_report(dsn, "rep_diabetes", out)
    assert done.returncode == 1
    assert "ERROR 42501: permission denied for model rep_diabetes" in done.stderr
    assert not out.exists()
    missing = run_report(dsn, "no_such_model", out)
    assert missing.returncode == 1 and "ERROR 42704" in missing.stderr and not out.exists()


def test_training_and_failed_models_say_so(report_world, chromium, tmp_path):
    training, failed = tmp_path / "training.html", tmp_path / "failed.html"
    with report_world.connect(OWNER) as owner:
        try:
            # What CREATE MODEL can know is refused up front; a worker killed mid-job
            # (as by the OOM killer) is what still ends FAILED.
            owner.execute("CREATE MODEL rep_failed FROM (SELECT f0, f1, species FROM iris) "
                          "TARGET species FUNCTION rep_failed SETTINGS (MAX_RUNTIME 120)")
            model_id = owner.execute("SELECT id FROM mlproxy.visible_models "
                                     "WHERE model_name = 'rep_failed'").fetchone()[0]
            started = f"training started model=public.rep_failed id={model_id} "
            assert report_world.proxy.wait_for_log(started, timeout=60)
            pid = re.search(re.escape(started) + r"database=\S+ pid=(\d+)",
                            report_world.proxy.read_log()).group(1)
            os.kill(int(pid), signal.SIGKILL)
            info = wait_for_state(owner, "rep_failed", timeout=90)
            assert info["Model State"] == "FAILED", info
            done = run_report(report_world.dsn(), "rep_failed", failed)
            assert done.returncode == 0, done.stderr
            owner.execute("CREATE MODEL rep_long FROM diabetes TARGET progression FUNCTION rep_long "
                          "SETTINGS (MAX_RUNTIME 600)")
            done = run_report(report_world.dsn(), "rep_long", training)
            assert done.returncode == 0, done.stderr
            assert "TRAINING" in done.stdout
        finally:
            owner.execute("DROP MODEL IF EXISTS rep_long")
            owner.execute("DROP MODEL IF EXISTS rep_failed")
    r = browse(chromium, training, tmp_path)
    check_page(r, [])
    assert "Still training:" in r.dom and 'class="state TRAINING"' in r.dom
    r = browse(chromium, failed, tmp_path)
    check_page(r, [])
    assert "Training failed." in r.dom and "ended unexpectedly" in r.dom
    assert "<figure" not in r.html
