"""The in-browser demo (book/try_in_browser.md) in headless Chromium, on the built book.

Its self-test segments a held-out ISBI 2012 slice with ONNX Runtime Web and the JavaScript
overlap-tile, and must give PyTorch's probabilities; wrong images get a one-line message.
The files it needs are written by the book's own build (book/_ext/browser_demo.py).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_browser import CHROMEDRIVER, CHROMIUM, browser, site  # noqa: F401  (fixtures, and the same skip)

ROOT = Path(__file__).resolve().parents[1]
PAGE = "book/try_in_browser.html"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (make test installs them)",
)


def _demo_extension():
    spec = importlib.util.spec_from_file_location("browser_demo", ROOT / "book" / "_ext" / "browser_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wait_for(browser, element_id: str, predicate: str, timeout: float = 60) -> str:  # noqa: F811
    """The text of ``element_id`` once the JavaScript ``predicate(element)`` holds."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    element = browser.find_element(By.ID, element_id)
    WebDriverWait(browser, timeout).until(lambda d: d.execute_script(f"return ({predicate})(arguments[0])", element))
    return element.text


def _console_errors(browser) -> list[str]:  # noqa: F811
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_build_ships_the_demo_with_the_stored_threshold(built_book):
    from unet_course.hub import pretrained_config

    demo = built_book / "_static" / "demo"
    meta = json.loads((demo / "meta.json").read_text())
    assert meta["missing"] == [], "the book was built without the demo: run `npm ci` (make js) first"
    assert meta["threshold"] == pretrained_config(meta["network"])["threshold"]
    assert (demo / meta["model"]).stat().st_size == meta["model_bytes"]
    assert (demo / meta["runtime"]).is_file() and (demo / "ort" / "ort-wasm-simd-threaded.wasm").is_file()
    assert [sample["slice"] for sample in meta["samples"]] == [25, 27, 29]  # held out of the network's training
    reference = np.fromfile(demo / meta["reference"]["file"], dtype="<f4")
    assert reference.size == 512 * 512 and 0 <= reference.min() and reference.max() <= 1


def test_selftest_gives_pytorchs_probabilities(site, browser):  # noqa: F811
    browser.get_log("browser")
    browser.get(f"{site}/{PAGE}?selftest=1&tile=572")  # the paper's tile: 4 tiles that overlap, stitched
    report = json.loads(_wait_for(browser, "unet-demo-selftest", "e => e.textContent.length > 0", timeout=300))
    assert "error" not in report, report
    assert report["max_abs_diff"] <= 1e-3, report
    assert report["mask_agreement"] >= 0.999, report
    assert report["ms"] > 0 and (report["tile_size"], report["tiles"]) == (572, 4), report
    assert not _console_errors(browser)
    status = _wait_for(browser, "unet-demo-status", "e => true")
    assert f"{report['tiles']} tile(s) of {report['tile_size']} px" in status


def _not_an_image(path: Path) -> Path:
    path.write_text("a text file, not a picture\n")
    return path


def _too_small(path: Path) -> Path:
    Image.fromarray(np.full((40, 300), 128, np.uint8)).save(path)
    return path


def _colour(path: Path) -> Path:
    rgb = np.zeros((256, 256, 3), np.uint8)
    rgb[..., 0] = 200  # red: the channels differ
    Image.fromarray(rgb).save(path)
    return path


@pytest.mark.parametrize("make, name, message", [
    (_not_an_image, "notes.png", "is not an image this browser can read"),
    (_too_small, "tiny.png", "is 300×40 px; the network looks 92 px around every pixel"),
    (_colour, "colour.png", "is a colour image"),
])
def test_a_wrong_image_gets_one_line_and_no_segment_button(make, name, message, site, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get_log("browser")
    browser.get(f"{site}/{PAGE}")
    _wait_for(browser, "unet-demo-status", "e => e.textContent.includes('Press Segment')")
    browser.find_element(By.ID, "unet-demo-file").send_keys(str(make(tmp_path / name)))
    status = _wait_for(browser, "unet-demo-status", "e => e.classList.contains('unet-demo-error')")
    assert name in status and message in status and "\n" not in status
    assert not browser.find_element(By.ID, "unet-demo-run").is_enabled()
    assert not _console_errors(browser)


def test_without_npm_the_book_builds_and_says_what_the_demo_needs(tmp_path):
    """No node_modules: the build writes the rest of the demo and meta.json names what is missing."""
    demo = _demo_extension()
    meta = demo.write_demo(tmp_path / "checkout", tmp_path / "site")
    assert meta["runtime"] is None and meta["missing"] == [demo.NEEDS_NPM]
    assert not (tmp_path / "site" / "ort").exists() and (tmp_path / "site" / "model.onnx").is_file()
    result = subprocess.run([shutil.which("make"), "-s", "-C", str(ROOT), "js"], env={"PATH": str(tmp_path)},
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().count("\n") == 0
    assert "needs Node.js and npm" in result.stdout


def test_benchmark_smoke(built_book):
    """The page-against-PyTorch benchmark runs (one tile size, one run) and writes nothing."""
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_browser_demo.py"), "--site",
                             str(built_book), "--smoke"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| 700 | 1 |" in result.stdout and "`model.onnx`" in result.stdout and "wrote" not in result.stdout
