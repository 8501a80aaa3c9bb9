"""Screenshot of the ``seqlab serve`` page for the README (docs/serve.png).

Starts the server on a free loopback port with the shipped model, opens the
page in the system's headless Chromium (Debian package ``chromium``, driven
by Playwright; no browser download), types some words, clicks Pronounce and
saves the page.

    python scripts/serve_screenshot.py [--out docs/serve.png] [--words "knight well-known Zürich"]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import torch
from playwright.sync_api import expect, sync_playwright

from seqlab.serve import BackgroundServer, ServeConfig, create_app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/serve.png")
    parser.add_argument("--words", default="knight well-known Zürich")
    args = parser.parse_args()
    torch.set_num_threads(1)
    chromium = os.environ.get("SEQLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("needs Chromium: apt-get install chromium", file=sys.stderr)
        return 2
    with BackgroundServer(create_app(ServeConfig())) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1000, "height": 640}, device_scale_factor=1)
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        page.fill("#text", args.words)
        page.click("#go")
        expect(page.locator(".result")).to_have_count(len(args.words.split()))
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
