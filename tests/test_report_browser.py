"""leaderboard.html rendered by headless Chromium: every embedded image decodes, and a screenshot is kept.

Skipped when no Chromium is installed (Debian: ``apt-get install -y --no-install-recommends chromium``).
The screenshot lands in ``test-artifacts/leaderboard.png`` at the repository root (git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_fixtures import three_models, write_examples, write_run, write_transfer

from robustbench_cnn.reporting.report import CSP, write_report

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WIDTH, HEIGHT = 1280, 2000


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install -y chromium)")

#: Marks <body> with "loaded/total" once the page has loaded: an image counts when it decoded (naturalWidth > 0).
PROBE = (
    "<script>window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);"
    "var ok=im.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;"
    "document.body.setAttribute('data-images-loaded',ok+'/'+im.length);});</script>"
)


def _chromium_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {**os.environ, "HOME": str(tmp_path)}  # Chromium writes caches under $HOME
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, check=False)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    run = write_run(root / "run", *three_models())
    write_transfer(run)
    write_examples(run, ["digits/a-standard", "digits/b-pgd-at"])
    _, html_path = write_report(run, store=root / "empty-store")
    return html_path


def test_every_image_decodes(report_html: Path, tmp_path: Path) -> None:
    page = report_html.read_text()
    total = len(re.findall(r"<img\b", page))
    assert CSP in page
    # The page's policy forbids scripts; the probe copy allows inline ones and nothing else.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';").replace(
            "</body>", PROBE + "</body>"
        )
    )
    result = _chromium_run(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r'data-images-loaded="(\d+)/(\d+)"', result.stdout)
    assert match, f"the probe did not run: {result.stdout[:500]!r} {result.stderr[-1000:]!r}"
    assert (int(match.group(1)), int(match.group(2))) == (total, total) and total == 6


def test_screenshot(report_html: Path, tmp_path: Path) -> None:
    from PIL import Image

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "leaderboard.png"
    shot.unlink(missing_ok=True)
    result = _chromium_run(
        tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", report_html.as_uri()
    )
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as im:
        assert im.size == (WIDTH, HEIGHT)
        rgb = im.convert("RGB")
        colors = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colors) > 200, "the screenshot is (nearly) blank"
        # Plots reach down the page: the lower half is not empty either.
        lower = rgb.crop((0, HEIGHT // 2, WIDTH, HEIGHT)).getcolors(maxcolors=1 << 20) or []
        assert len(lower) > 50
