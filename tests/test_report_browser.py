"""leaderboard.html rendered by headless Chromium: every embedded image decodes, a model has one colour in the
page and in every plot, and a screenshot is kept.

Skipped when no Chromium is installed (Debian: ``apt-get install -y --no-install-recommends chromium``).
The screenshot lands in ``test-artifacts/leaderboard.png`` at the repository root (git-ignored).
"""

from __future__ import annotations

import base64
import io
import json
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


#: Writes the colour Chromium computed for every model swatch (``.sw[data-model]``) into <body> as JSON.
SWATCH_PROBE = (
    "<script>window.addEventListener('load',function(){var out=[];"
    "document.querySelectorAll('.sw[data-model]').forEach(function(e){"
    "out.push([e.getAttribute('data-model'),getComputedStyle(e).backgroundColor]);});"
    "document.body.setAttribute('data-swatches',JSON.stringify(out));});</script>"
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


def _rendered_dom(page: str, tmp_path: Path, probe: str) -> str:
    """The DOM Chromium builds for ``page`` with the inline script ``probe`` allowed and appended."""
    copy = tmp_path / "probe.html"
    copy.write_text(
        page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';").replace(
            "</body>", probe + "</body>"
        )
    )
    result = _chromium_run(tmp_path, "--virtual-time-budget=10000", "--dump-dom", copy.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _pixels(png: bytes, rgb: tuple[int, int, int], tol: int = 2) -> int:
    """Pixels of ``png`` within ``tol`` (per channel) of ``rgb``: a line or marker drawn in that colour."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        data = list(im.convert("RGB").getdata())
    return sum(1 for p in data if all(abs(a - b) <= tol for a, b in zip(p, rgb)))


def test_a_model_has_one_colour_in_the_page_and_in_every_plot(report_html: Path, tmp_path: Path) -> None:
    """The colours Chromium renders for the model swatches (colour key, ranked tables, eps tables) are one per model
    and differ between models; each robustness-curve PNG draws exactly the models of its board, in those colours:
    digits/a-standard in the same colour on the l2 board (where it is alone) and the linf board."""
    page = report_html.read_text()
    dom = _rendered_dom(page, tmp_path, SWATCH_PROBE)
    match = re.search(r"data-swatches=\"([^\"]*)\"", dom)
    assert match, dom[:500]
    swatches = json.loads(match.group(1).replace("&quot;", '"'))
    colours: dict[str, set[tuple[int, ...]]] = {}
    for model, css in swatches:
        colours.setdefault(model, set()).add(tuple(int(v) for v in re.findall(r"\d+", css)[:3]))
    assert set(colours) == {"digits/a-standard", "digits/b-pgd-at", "digits/c-standard"}
    assert all(len(c) == 1 for c in colours.values()), colours  # one colour per model, wherever it appears
    rgb = {m: next(iter(c)) for m, c in colours.items()}
    assert len(set(rgb.values())) == 3  # and models differ
    assert sum(1 for model, _ in swatches if model == "digits/a-standard") >= 4  # key + tables of both boards

    images = dict(re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page))
    curves = {alt.split(", ", 1)[1].split(" (")[0]: base64.b64decode(b) for alt, b in images.items() if "curves" in alt}
    tradeoff = {
        alt.split(", ", 1)[1].split(" (")[0]: base64.b64decode(b) for alt, b in images.items() if "trade" in alt
    }
    assert set(curves) == {"digits · l2 · untargeted", "digits · linf · untargeted"}
    # Measured on this fixture: a model's line, markers and legend entry are about 600 pixels of its exact colour on
    # a curve plot and about 115 on the trade-off scatter; a colour not drawn gives 0. Half of that is required.
    l2, linf = curves["digits · l2 · untargeted"], curves["digits · linf · untargeted"]
    assert _pixels(l2, rgb["digits/a-standard"]) >= 300
    assert _pixels(l2, rgb["digits/b-pgd-at"]) == 0 and _pixels(l2, rgb["digits/c-standard"]) == 0
    assert all(_pixels(linf, rgb[m]) >= 300 for m in rgb)
    # the trade-off scatter colours each model's point the same way
    assert all(_pixels(tradeoff["digits · linf · untargeted"], rgb[m]) >= 55 for m in rgb)
    assert _pixels(tradeoff["digits · l2 · untargeted"], rgb["digits/b-pgd-at"]) == 0
