"""The in-browser demo against PyTorch: one 512×512 ISBI 2012 slice, overlap-tile, no TTA.

The book's page (book/try_in_browser.md) runs the published U-Net in ONNX Runtime Web on one
WebAssembly thread; its self-test reports the milliseconds its overlap-tile loop took. This
script opens the built page in headless Chromium once per tile size, times
``unet_course.predict_tiled`` on the same slice in PyTorch (one thread, then every core) and the
whole ``unet-course predict --no-tta`` command, and measures what the page downloads.

    python benchmarks/bench_browser_demo.py                    # after `make book`: results/browser_demo.md
    python benchmarks/bench_browser_demo.py --site DIR --smoke # one tile size, one run, prints only (CI)
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "browser_demo.md"
TILES = (316, 396, 572, 700)  # the network's training tile (the command line's default), …, one tile for 512²
PAGE_FILES = ("unet_demo.js", "unet_demo.css", "meta.json")  # besides the runtime, the model and the slice


def _serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def browser_ms(url: str, tile: int, runs: int) -> dict:
    """The page's self-test at ``tile``: best milliseconds of ``runs`` fresh page loads, and its agreement."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    best = None
    for _ in range(runs):
        driver = _chromium()
        try:
            driver.get(f"{url}/book/try_in_browser.html?selftest=1&tile={tile}")
            element = driver.find_element(By.ID, "unet-demo-selftest")
            WebDriverWait(driver, 600).until(lambda _: element.text)
            report = json.loads(element.text)
        finally:
            driver.quit()
        if "error" in report or report["tile_size"] != tile:
            raise RuntimeError(f"the page's self-test at tile {tile} failed: {report}")
        best = report if best is None or report["ms"] < best["ms"] else best
    return best


def torch_ms(model, image: torch.Tensor, tile: int, threads: int, runs: int) -> float:
    from unet_course import predict_tiled

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        predict_tiled(model, image, tile_size=tile)  # warm-up: first-call allocations
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            predict_tiled(model, image, tile_size=tile)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 1000 * min(times)


def cli_ms(slice_png: Path, runs: int, tile: int | None = None) -> float:
    """Wall time of ``unet-course predict --no-tta`` on the slice (at ``--tile-size tile`` if given), the
    published network as its run."""
    from unet_course import pretrained
    from unet_course.hub import pretrained_config
    from unet_course.runs import write_config

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        torch.save({"model": pretrained("isbi2012-cpu").state_dict()}, folder / "isbi2012-cpu.pt")
        write_config(folder / "isbi2012-cpu.json", pretrained_config("isbi2012-cpu"))
        (folder / "in").mkdir()
        shutil.copyfile(slice_png, folder / "in" / slice_png.name)
        times = []
        for run in range(runs):
            command = [sys.executable, "-m", "unet_course", "predict", str(folder / "isbi2012-cpu.pt"),
                       str(folder / "in"), str(folder / f"out{run}"), "--no-tta", "--quiet"]
            command += ["--tile-size", str(tile)] if tile else []
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return 1000 * min(times)


def download_sizes(demo: Path, meta: dict) -> list[tuple[str, int, int]]:
    """``(file, bytes, gzip bytes)`` of what the page fetches to segment the first slice."""
    files = [meta["runtime"], "ort/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.wasm", meta["model"],
             meta["samples"][0]["file"], *PAGE_FILES]
    return [(name, (demo / name).stat().st_size, len(gzip.compress((demo / name).read_bytes(), 6))) for name in files]


def pretrained_tile(meta: dict) -> int:
    """The published network's training tile, which ``unet-course predict`` uses unless told otherwise."""
    from unet_course.hub import pretrained_config

    return pretrained_config(meta["network"])["tile_size"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "html", help="the built book (make book)")
    parser.add_argument("--smoke", action="store_true", help="one tile size, one run each, print only")
    args = parser.parse_args()
    demo = args.site / "_static" / "demo"
    meta = json.loads((demo / "meta.json").read_text())
    if meta["missing"]:
        sys.exit(f"error: {args.site} was built without the demo ({'; '.join(meta['missing'])}); run make book")
    tiles, runs = ((700,), 1) if args.smoke else (TILES, 2)

    from unet_course import pretrained
    from unet_course.data.images import load_image

    slice_png = demo / meta["samples"][0]["file"]
    model, image = pretrained(meta["network"]), torch.from_numpy(load_image(slice_png))
    server, url = _serve(args.site)
    rows = []
    try:
        for tile in tiles:
            page = browser_ms(url, tile, runs)
            rows.append((tile, page["tiles"], page["ms"], torch_ms(model, image, tile, 1, runs),
                         torch_ms(model, image, tile, os.cpu_count() or 1, runs), page["max_abs_diff"]))
    finally:
        server.shutdown()
    sizes = download_sizes(demo, meta)
    fastest = min(rows, key=lambda row: row[2])
    command_fastest = cli_ms(slice_png, runs, fastest[0])
    command = None if args.smoke else cli_ms(slice_png, runs)  # its default tile: 16 tiles, skipped in CI
    cores = os.cpu_count()

    lines = [
        "# In the browser: the demo page against PyTorch",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {cores} cores, {platform.system()} "
        f"{platform.release()}, load average {os.getloadavg()[0]:.1f} at the end (other work shared the cores); "
        f"Python {platform.python_version()}, PyTorch {torch.__version__}, "
        f"ONNX Runtime Web {meta['runtime_version']} in headless Chromium. Measured {date.today()} with "
        f"`python benchmarks/bench_browser_demo.py` (best of {runs} runs; the page is loaded afresh for each).",
        "",
        f"One 512×512 ISBI 2012 slice ({meta['samples'][0]['slice']}, held out of training), the published "
        f"`{meta['network']}` network, overlap-tile without TTA. *Page* is the time the page's JavaScript took "
        "from the first tile to the stitched probabilities, on one WebAssembly thread (its self-test), after the "
        "runtime and the network were loaded; *PyTorch* is `predict_tiled` in this process with one thread and "
        f"with {cores}. The last column is the page's largest difference from PyTorch's probabilities.",
        "",
        "| tile | tiles | page (1 thread) | PyTorch, 1 thread | PyTorch, " f"{cores} threads | page / PyTorch 1 thread "
        "| max abs difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for tile, count, page_ms, one, every, difference in rows:
        lines.append(f"| {tile} | {count} | {page_ms / 1000:.2f} s | {one / 1000:.2f} s | {every / 1000:.2f} s "
                     f"| {page_ms / one:.1f}× | {difference:.1e} |")
    total, packed = sum(size for _, size, _ in sizes), sum(size for _, _, size in sizes)
    lines += [
        "",
        f"The page is fastest with {fastest[0]}-px tiles ({fastest[2] / 1000:.2f} s). The whole command "
        f"`unet-course predict --no-tta` on the same slice, with the start of Python and PyTorch, takes "
        + (f"{command / 1000:.2f} s at its default tile (the training tile, {pretrained_tile(meta)} px) and "
           if command is not None else "")
        + f"{command_fastest / 1000:.2f} s with `--tile-size {fastest[0]}`.",
        "",
        f"To segment its first slice the page downloads {total / 1e6:.1f} MB ({packed / 1e6:.1f} MB "
        "gzip-compressed, as web servers usually send it), once; the browser caches it:",
        "",
        "| file | size | gzip |",
        "|---|---|---|",
    ] + [f"| `{name}` | {size / 1e6:.2f} MB | {packed_size / 1e6:.2f} MB |" for name, size, packed_size in sizes]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.smoke:
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
