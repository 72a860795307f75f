"""Every chapter on a fresh runtime built from Colab's own package versions.

`colab_runtime.build` rebuilds Colab's GPU runtime from the stored part of its published package
list (`tests/colab_packages.txt`): Colab's Python where this machine has one with torch (else this
interpreter's, and the test output says why), torch and torchvision as available here, every
other package at Colab's version. The wheel, built from the checkout, is installed on top with the
extras each chapter's install cell names, in a new environment per set of extras, and pip's report
must show that it replaced none of Colab's packages; every extra a Colab reader may install is
resolved against the same runtime and must replace nothing either. Each notebook is then executed
alone, in an empty folder, under the smoke budget, with no data folder: ISBI 2012 is downloaded,
from a local `file://` mirror of `$UNET_COURSE_DATA/isbi2012` (fetched once from the pinned
addresses where there is no copy). Several notebooks run at a time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import colab_runtime
from colab_runtime import COLAB_EXTRAS, normal
from setup_cells import EXTRA_MODULES, NOTEBOOKS, ROOT, setup_cell

WORKERS = max(1, min(4, os.cpu_count() or 1))
CELL_TIMEOUT_S = 600  # a smoke-budget cell takes seconds

pytestmark = pytest.mark.slow


def _installed_extras(notebook: Path) -> tuple[str, ...]:
    """The extras the notebook's install cell asks pip for, read from the cell itself."""
    source = "".join(setup_cell(json.loads(notebook.read_text()))["source"])
    found = re.search(r"'unet-course(?:\[([a-z,]*)\])?[ =@]", source)
    assert found, f"{notebook.name}: no unet-course requirement in its install cell"
    return tuple(sorted(filter(None, (found.group(1) or "").split(","))))


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _replaced(report: dict, preinstalled: dict[str, str]) -> dict[str, str]:
    """What pip's report installs over a preinstalled package: ``name → "old → new"``."""
    return {normal(item["metadata"]["name"]): f"{preinstalled[normal(item['metadata']['name'])]} → "
                                              f"{item['metadata']['version']}"
            for item in report["install"] if normal(item["metadata"]["name"]) in preinstalled}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from the files git would commit (nothing else of the checkout)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    listing = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout.split("\n")
    for name in filter(None, listing):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, source])
    return next(out.glob("unet_course-*.whl"))


@pytest.fixture(scope="module")
def colab(tmp_path_factory, request) -> colab_runtime.Runtime:
    """Colab's runtime, built once; its summary (Python, versions, differences) opens the test output."""
    runtime = colab_runtime.build(tmp_path_factory.mktemp("colab"))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nfresh runtime: {runtime.summary}")
    return runtime


def _install(folder: Path, wheel: Path, colab: colab_runtime.Runtime, extras: tuple[str, ...]) -> tuple[Path, dict]:
    """A new environment on Colab's runtime with the wheel and ``extras`` installed, as a chapter's install cell does."""
    python = colab_runtime.new_environment(folder, colab.python, colab.layers)
    requirement = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    report = folder / "pip-report.json"
    _run([python, "-m", "pip", "install", "--quiet", "--no-compile", "--report", report, requirement])
    kernel = folder / "share" / "jupyter" / "kernels" / "fresh"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh runtime", "language": "python",
    }))
    return python, json.loads(report.read_text())


def _resolve(report: Path, wheel: Path, colab: colab_runtime.Runtime, extra: str) -> dict:
    """pip's report for installing ``unet-course[extra]`` on Colab's runtime, resolved without installing."""
    _run([colab.base, "-m", "pip", "install", "--quiet", "--dry-run", "--report", report, f"{wheel}[{extra}]"])
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def resolutions(wheel, colab, tmp_path_factory):
    """``extra → future of pip's report`` for every Colab extra: resolved while the notebooks run."""
    root = tmp_path_factory.mktemp("resolve")
    with ThreadPoolExecutor(len(COLAB_EXTRAS)) as pool:
        yield {extra: pool.submit(_resolve, root / f"{extra}.json", wheel, colab, extra) for extra in COLAB_EXTRAS}


@pytest.fixture(scope="module")
def installs(wheel, colab, resolutions, tmp_path_factory) -> dict[tuple[str, ...], tuple[Path, dict]]:
    """``extras → (python, pip's report)``: a new environment per set of extras the chapters install."""
    wanted = sorted({_installed_extras(notebook) for notebook in NOTEBOOKS})
    root = tmp_path_factory.mktemp("runtimes")
    with ThreadPoolExecutor(WORKERS) as pool:
        made = pool.map(lambda extras: _install(root / ("-".join(extras) or "plain"), wheel, colab, extras), wanted)
        return dict(zip(wanted, made))


def _execute(notebook: Path, python: Path, mirror: Path, folder: Path) -> tuple[int, str, float]:
    folder.mkdir()
    shutil.copy(notebook, folder / notebook.name)
    env = {key: value for key, value in os.environ.items()
           if key not in ("UNET_COURSE_DATA", "PYTHONPATH", "MPLBACKEND", "JUPYTER_PATH", "VIRTUAL_ENV")}
    env.update(CI="true", UNET_COURSE_BUDGET="smoke", UNET_COURSE_DATA_MIRROR=mirror.as_uri(), OMP_NUM_THREADS="1",
               JUPYTER_PATH=str(python.parents[1] / "share" / "jupyter"))
    # nbval, as the repository's own notebook run does: its blocking kernel client never misses a reply, where
    # nbclient can wait out a whole cell timeout after an interact cell on Colab's Jupyter versions (nbclient#312)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-kernel-name=fresh",
         f"--nbval-cell-timeout={CELL_TIMEOUT_S}", "-p", "no:cacheprovider", "-q", "--rootdir", str(folder),
         notebook.name],
        cwd=folder, env=env, capture_output=True, text=True)
    return result.returncode, (result.stdout + result.stderr)[-6000:], time.perf_counter() - started


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A folder holding ``isbi2012/``: ``$UNET_COURSE_DATA``, or a copy fetched once from the pinned addresses."""
    from unet_course.data import ISBI2012, DownloadError

    given = Path(os.environ.get("UNET_COURSE_DATA", "data"))
    if (given / "isbi2012" / "image" / "0.png").exists():
        return given
    fetched = tmp_path_factory.mktemp("mirror")
    try:
        ISBI2012(fetched / "isbi2012", download=True)
    except DownloadError as error:
        pytest.skip(f"no ISBI 2012 copy at {given} and none to download ({error})")
    return fetched


@pytest.fixture(scope="module")
def executions(installs, mirror, tmp_path_factory) -> dict[str, tuple[int, str, float]]:
    """Every notebook executed alone, several at a time: ``name → (exit code, output tail, seconds)``."""
    root = tmp_path_factory.mktemp("alone")

    def execute(notebook: Path):
        python, _ = installs[_installed_extras(notebook)]
        return _execute(notebook, python, mirror, root / notebook.stem)

    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip((notebook.name for notebook in NOTEBOOKS), pool.map(execute, NOTEBOOKS)))


def test_every_extra_is_sorted_for_colab_or_for_contributors():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert extras == set(COLAB_EXTRAS) | {"book", "dev"}, "say in colab_runtime.COLAB_EXTRAS whether a new extra is for Colab"


def test_wheel_declares_its_license_and_version(wheel):
    import unet_course

    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"unet_course-{unet_course.__version__}.dist-info/METADATA").decode()
        names = archive.namelist()
    assert "License-Expression: MIT" in metadata
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert f"Version: {unet_course.__version__}" in metadata


def test_runtime_holds_colabs_versions(colab):
    stored = colab_runtime.read_packages()
    assert {"numpy", "protobuf", "ipywidgets", "ipykernel", "ipython", "jupyter-client"} <= set(stored.versions)
    unexplained = {name: versions for name, versions in colab.differences.items() if name not in colab.reasons}
    assert not unexplained, f"not at Colab's versions, for no reason the build knows: {unexplained}"
    assert len(colab.differences) <= 3, colab.differences  # the odd package, never the stack
    assert {"torch", "torchvision"} <= set(colab.installed)


def test_chapter_installs_replace_nothing_preinstalled(installs, colab):
    for extras, (python, report) in installs.items():
        assert "unet-course" in {normal(item["metadata"]["name"]) for item in report["install"]}
        replaced = _replaced(report, colab.installed)
        assert not replaced, f"unet-course[{','.join(extras)}] replaced Colab's {replaced}"
        modules = [EXTRA_MODULES[extra] for extra in extras]  # what the extra brings, preinstalled or not
        _run([python, "-c", f"import importlib.util as u; assert all(u.find_spec(m) for m in {modules!r})"])


@pytest.mark.parametrize("notebook", [notebook.name for notebook in NOTEBOOKS])
def test_notebook_runs_alone_on_a_fresh_runtime(notebook, executions):
    returncode, output, seconds = executions[notebook]
    assert returncode == 0, f"{notebook} failed on a fresh runtime after {seconds:.0f} s:\n{output}"


@pytest.mark.parametrize("extra", COLAB_EXTRAS)
def test_extra_installs_on_colab_without_replacing_anything(extra, resolutions, colab):
    report = resolutions[extra].result()  # after the notebooks: resolved while they ran
    assert "unet-course" in {normal(item["metadata"]["name"]) for item in report["install"]}
    replaced = _replaced(report, colab.installed)
    assert not replaced, f"unet-course[{extra}] would replace Colab's {replaced}"
