"""End to end in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

The studio runs in-process on 127.0.0.1 with the toy world when it is built (else the tiny random pipeline). The test
types a concept, runs a 3-step erasure, waits for the before and after images and saves a screenshot. Then a second
click during a long run must be told to wait, Stop must end that run, and an empty concept must get a message in the
page.

The screenshot goes to ``$STUDIO_SCREENSHOT`` when set, else into the test's tmp_path, so CI never dirties the tree.
The README's picture comes from ``STUDIO_SCREENSHOT=docs/studio.png STUDIO_ERASE_STEPS=100 pytest
tests/test_browser.py``: the toy preset's full 150 steps (about two minutes on a CPU), previews at 25 sampler steps.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch

from eval.judges import Judge, Verdict
from pipelines.toy.world import concept_kind

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]


class RednessJudge(Judge):
    """Knows the toy world's concepts; "sees" a concept where red outweighs blue (for the random tiny pipeline)."""

    name = "redness"

    def knows(self, concept: str) -> bool:
        return concept_kind(concept) is not None

    def judge(self, images, concept):
        redness = (images[:, 0] - images[:, 2]).mean(dim=(1, 2)).tolist()
        return [Verdict(r > 0, 1 / (1 + math.exp(-10 * r)), concept if r > 0 else "other") for r in redness]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _studio_options() -> dict:
    """The toy world when its SD and judge are built, else the tiny random pipeline with a pixel judge."""
    from ui.studio import toy_is_built

    if toy_is_built("sd") and toy_is_built("judge"):
        # Full-quality previews for the README's picture; fewer sampler steps keep the CI run short.
        return {
            "model": "toy",
            "judge": "toy",
            "num_inference_steps": 25 if os.environ.get("STUDIO_SCREENSHOT") else 10,
        }
    from pipelines.tiny import tiny_sd

    return {"model": tiny_sd(0), "judge": RednessJudge(), "num_inference_steps": 4}


@pytest.fixture
def one_torch_thread():
    """Small models gain little from intra-op threads, and where another job keeps a core busy two threads were
    measured up to 100x slower (OpenMP waiting on the busy core); restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_erase_in_the_browser_shows_before_and_after(tmp_path, monkeypatch, one_torch_thread):
    sync_api = pytest.importorskip("playwright.sync_api")
    from ui.app import build_demo

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    screenshot = Path(os.environ.get("STUDIO_SCREENSHOT") or tmp_path / "studio.png")
    erase_steps = int(os.environ.get("STUDIO_ERASE_STEPS", "3"))
    demo = build_demo(output_dir=tmp_path / "runs", save_samples=False, **_studio_options())
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        with sync_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = context.new_page()
                # Offline: anything not served by the studio itself (web fonts, say) is refused at once.
                page.route(
                    "**/*",
                    lambda route: (
                        route.continue_()
                        if route.request.url.startswith(f"http://127.0.0.1:{port}")
                        else route.abort()
                    ),
                )
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                concept = page.locator("#concept textarea, #concept input").first
                concept.wait_for()
                assert "Fine-tunes the UNet" in page.locator("#method-summary").inner_text()  # ESD's one-liner

                steps = page.locator("#setting-esd-max_train_steps input").first
                steps.fill(str(erase_steps))
                steps.press("Tab")
                concept.fill("star")
                concept.press("Tab")
                page.locator("#erase-button").click()

                page.locator("#before-image img").first.wait_for()
                page.locator("#after-image img").first.wait_for()
                page.locator("#erase-status").get_by_text("Done").wait_for()
                status = page.locator("#erase-status").inner_text()
                assert "'star' erased with esd" in status and f"({erase_steps} steps" in status
                for image in ("#before-image img", "#after-image img"):
                    assert page.locator(image).first.evaluate("img => img.complete && img.naturalWidth > 0")
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)

                # A second run asked for while one is going waits in Gradio's queue (not turned away: its position
                # reaches gradio_client, tests/test_studio_load.py); Stop ends the running one, the queued one
                # starts, and Stop ends it too.
                steps.fill("100000")
                steps.press("Tab")
                page.locator("#erase-button").click()
                page.locator("#erase-status").get_by_text("erasing 'star': step").first.wait_for()
                concept.fill("heart")
                concept.press("Tab")
                page.locator("#erase-button").click()
                page.locator("#stop-button").click()
                page.locator("#erase-status").get_by_text("erasing 'heart': step").first.wait_for()
                assert page.get_by_text("Another run is going").count() == 0
                page.locator("#stop-button").click()
                page.locator("#erase-status").get_by_text("Stopped after step").wait_for()

                # Bad input gets a message in the page, not a traceback.
                concept.fill("")
                concept.press("Tab")
                page.locator("#erase-button").click()
                page.get_by_text("The concept is empty").first.wait_for()
                assert "Traceback" not in page.content()
            finally:
                context.close()
    finally:
        demo.close()
    assert screenshot.stat().st_size > 20_000
