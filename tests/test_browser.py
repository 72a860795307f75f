"""The book as a reader sees it: every page opened in headless Chromium.

Each page must load without console errors, show every image, typeset its math, render
the widgets saved in it and, for notebooks, offer a Colab launch button for that very
notebook. Screenshots of two
pages are kept in ``_build/screenshots`` for a person to look at.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
SCREENSHOTS = ("book/01_segmentation_tasks", "book/03_unet_architecture")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (make test installs them)",
)


def _pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for entry in toc["chapters"]]


@pytest.fixture(scope="module")
def site(built_book):
    """Serve the built book on a free localhost port."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(built_book))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


# Resolves once every image has loaded (lazy ones included) and MathJax has typeset.
SETTLE = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images).map(img => new Promise(resolve => {
  const probe = new Image();
  probe.onload = () => resolve({src: img.src, ok: probe.naturalWidth > 0});
  probe.onerror = () => resolve({src: img.src, ok: false});
  probe.src = img.src;
}));
const math = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
Promise.all([Promise.all(images), math]).then(([loaded]) => done({
  broken: loaded.filter(x => !x.ok).map(x => x.src),
  images: loaded.length,
  math: document.querySelectorAll('span.math, div.math').length,
  typeset: document.querySelectorAll('mjx-container').length,
  colab: Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href),
  widgets: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
  rendered: document.querySelectorAll('.jupyter-widgets').length,
}));
"""


@pytest.mark.parametrize("page", _pages())
def test_page_as_a_reader_sees_it(page, site, browser):
    browser.get_log("browser")  # drop what earlier pages left
    browser.get(f"{site}/{page}.html")
    state = browser.execute_async_script(SETTLE)
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"{page}: console errors {errors}"
    assert not state["broken"], f"{page}: images that did not load {state['broken']}"
    assert state["typeset"] >= state["math"], f"{page}: {state['math']} formulas, {state['typeset']} typeset"
    if state["widgets"]:  # saved widget state must come alive in the static page
        assert state["rendered"] > 0, f"{page}: {state['widgets']} saved widgets, none rendered"
    if (ROOT / f"{page}.ipynb").exists():
        owner_repo = REPOSITORY.removeprefix("https://github.com/")
        stem = page.rpartition("/")[2]  # the chapter's plain-Markdown copy
        expected = f"https://colab.research.google.com/github/{owner_repo}/blob/main/colab/{stem}.ipynb"
        assert expected in state["colab"], f"{page}: Colab buttons {state['colab']}"
        assert state["images"] > 0, f"{page}: a chapter without figures"
    if page in SCREENSHOTS:
        out = ROOT / "_build" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(out / f"{page.replace('/', '_')}.png"))
