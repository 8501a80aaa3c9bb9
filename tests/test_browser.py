"""The ``seqlab serve`` page in a real browser: headless Chromium driven by Playwright.

Uses the system's Chromium (Debian package ``chromium``, which ``make test``
installs), never a browser downloaded by Playwright.
"""

import os
import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from seqlab.serve import BackgroundServer, ServeConfig, create_app
from seqlab.tasks.g2p import load_pretrained


def _chromium() -> str:
    path = os.environ.get("SEQLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "the browser test needs Chromium: apt-get install chromium (make test does this)"
    return path


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


@pytest.fixture(scope="module")
def page(model):
    with BackgroundServer(create_app(ServeConfig(beam=5), model=model)) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium())
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.set_default_timeout(120_000)  # generous: a busy machine must not fail the test
            expect.set_options(timeout=120_000)
            page.goto(url)
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            yield page
            browser.close()


def _cells(page, result):
    """``(rows, cols, fill colours)`` of each heatmap drawn in a result card."""
    maps = []
    for svg in result.locator("svg.heatmap").all():
        fills = svg.locator("rect.cell").evaluate_all("cells => cells.map(c => c.getAttribute('fill'))")
        maps.append((int(svg.get_attribute("data-rows")), int(svg.get_attribute("data-cols")), fills))
    return maps


def test_typing_words_shows_pronunciations_and_heatmaps(page, model, tmp_path):
    page.fill("#text", "Hello, world!")
    page.click("#go")
    results = page.locator(".result")
    expect(results).to_have_count(2)
    expected = model.pronounce_text(["Hello", "world"], beam=5)
    for i, (word, phones) in enumerate(zip(["Hello", "world"], expected)):
        card = results.nth(i)
        expect(card.locator("h2")).to_have_text(word)
        expect(card.locator(".phones")).to_have_text(" ".join(phones))
        [(rows, cols, fills)] = _cells(page, card)
        assert (rows, cols) == (len(phones) + 1, len(word))
        assert len(fills) == rows * cols
        assert len(set(fills)) > 1  # weights are drawn as shades, not one flat colour
        box = card.locator("svg.heatmap").bounding_box()
        assert box["width"] > 50 and box["height"] > 50  # laid out and visible
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_clicking_an_example_pronounces_it_part_by_part(page, model):
    page.locator("button.example", has_text="well-known").click()
    card = page.locator(".result")
    expect(card).to_have_count(1)
    expect(card.locator("h2")).to_have_text("well-known")
    expect(card.locator(".phones")).to_have_text(" ".join(model.pronounce_text(["well-known"], beam=5)[0]))
    assert [cols for _, cols, _ in _cells(page, card)] == [4, 5]  # one heatmap per part: well, known
    expect(page.locator("#text")).to_have_value("well-known")


def test_a_bad_word_shows_the_error_line(page):
    page.fill("#text", "r2d2")
    page.click("#go")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("digits are not supported")
