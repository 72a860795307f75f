"""Every chapter on a fresh runtime, as Colab gives one.

The wheel is built from the checkout and installed, with the extras each chapter's install
cell names, into a new environment per set of extras. Like a Colab runtime, that environment
already has torch, torchvision and numpy (and the Jupyter kernel): they are this
environment's own, linked in, and pip must keep them. Each notebook is then executed alone,
in an empty folder, under the smoke budget, with no data folder: ISBI 2012 is downloaded, from
a local `file://` mirror of `$UNET_COURSE_DATA/isbi2012` (fetched once from the pinned
addresses where there is no copy). Several notebooks run at a time.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from setup_cells import EXTRA_MODULES, NOTEBOOKS, ROOT, setup_cell

PREINSTALLED = ["torch", "torchvision", "numpy"]  # what Colab has and the library must never replace
KERNEL = ["ipykernel"]  # what runs the notebooks, on Colab as here
WORKERS = max(1, min(4, os.cpu_count() or 1))
CELL_TIMEOUT_S = 600  # a smoke-budget cell takes seconds

pytestmark = pytest.mark.slow


def _installed_extras(notebook: Path) -> tuple[str, ...]:
    """The extras the notebook's install cell asks pip for, read from the cell itself."""
    source = "".join(setup_cell(json.loads(notebook.read_text()))["source"])
    found = re.search(r"'unet-course(?:\[([a-z,]*)\])?[ =@]", source)
    assert found, f"{notebook.name}: no unet-course requirement in its install cell"
    return tuple(sorted(filter(None, (found.group(1) or "").split(","))))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(names: list[str]) -> set[str]:
    """The installed distributions ``names`` need, with everything they require."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        key = _normal(name)
        if key in seen:
            continue
        seen.add(key)
        for line in importlib.metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from the files git would commit (nothing else of the checkout)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    listing = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout.split("\n")
    for name in filter(None, listing):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out),
          str(source)])
    return next(out.glob("unet_course-*.whl"))


@pytest.fixture(scope="module")
def preinstalled(tmp_path_factory) -> Path:
    """A folder of links to this environment's torch, torchvision, numpy and kernel, with all they require."""
    folder = tmp_path_factory.mktemp("preinstalled")
    for name in sorted(_closure(PREINSTALLED + KERNEL)):
        distribution = importlib.metadata.distribution(name)
        site = Path(distribution.locate_file(""))
        tops = {Path(file).parts[0] for file in distribution.files or [] if not str(file).startswith("..")}
        for top in tops - {"__pycache__"}:
            if not top.endswith(".pth") and not (folder / top).exists() and (site / top).exists():
                (folder / top).symlink_to(site / top)
    return folder


def _make_runtime(folder: Path, wheel: Path, preinstalled: Path, extras: tuple[str, ...]) -> tuple[Path, dict]:
    _run([sys.executable, "-m", "venv", str(folder)])
    python = folder / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "colab_preinstalled.pth").write_text(f"{preinstalled}\n")
    requirement = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    report = folder / "pip-report.json"
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-compile", "-c", str(ROOT / "constraints.txt"), "--report", str(report),
          requirement])
    kernel = folder / "share" / "jupyter" / "kernels" / "fresh"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh runtime", "language": "python",
    }))
    return python, json.loads(report.read_text())


@pytest.fixture(scope="module")
def runtimes(wheel, preinstalled, tmp_path_factory) -> dict[tuple[str, ...], tuple[Path, dict]]:
    """One new environment per set of extras the chapters install: ``extras → (python, pip's report)``."""
    wanted = sorted({_installed_extras(notebook) for notebook in NOTEBOOKS})
    root = tmp_path_factory.mktemp("runtimes")
    with ThreadPoolExecutor(WORKERS) as pool:
        made = pool.map(lambda extras: _make_runtime(root / ("-".join(extras) or "plain"), wheel, preinstalled, extras),
                        wanted)
        return dict(zip(wanted, made))


def _execute(notebook: Path, python: Path, mirror: Path, folder: Path) -> tuple[int, str, float]:
    folder.mkdir()
    shutil.copy(notebook, folder / notebook.name)
    env = {key: value for key, value in os.environ.items()
           if key not in ("UNET_COURSE_DATA", "PYTHONPATH", "MPLBACKEND", "JUPYTER_PATH", "VIRTUAL_ENV")}
    env.update(CI="true", UNET_COURSE_BUDGET="smoke", UNET_COURSE_DATA_MIRROR=mirror.as_uri(), OMP_NUM_THREADS="1",
               JUPYTER_PATH=str(python.parents[1] / "share" / "jupyter"))
    # nbval, as the repository's own notebook run does: its blocking kernel client never misses a reply,
    # where nbconvert's asyncio client can wait out a whole cell timeout after a widget cell
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
def executions(runtimes, mirror, tmp_path_factory) -> dict[str, tuple[int, str, float]]:
    """Every notebook executed alone, several at a time: ``name → (exit code, output tail, seconds)``."""
    root = tmp_path_factory.mktemp("alone")

    def execute(notebook: Path):
        python, _ = runtimes[_installed_extras(notebook)]
        return _execute(notebook, python, mirror, root / notebook.stem)

    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip((notebook.name for notebook in NOTEBOOKS), pool.map(execute, NOTEBOOKS)))


def test_wheel_declares_its_license_and_version(wheel):
    import unet_course

    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"unet_course-{unet_course.__version__}.dist-info/METADATA").decode()
        names = archive.namelist()
    assert "License-Expression: MIT" in metadata
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert f"Version: {unet_course.__version__}" in metadata


def test_install_keeps_the_preinstalled_torch(runtimes):
    for extras, (_, report) in runtimes.items():
        installed = {_normal(item["metadata"]["name"]) for item in report["install"]}
        assert "unet-course" in installed
        assert not installed & set(PREINSTALLED), f"extras {extras} replaced {installed & set(PREINSTALLED)}"
        for extra in extras:  # what the extra brings is installed with it
            assert _normal(EXTRA_MODULES[extra]) in installed, (extra, installed)


@pytest.mark.parametrize("notebook", [notebook.name for notebook in NOTEBOOKS])
def test_notebook_runs_alone_on_a_fresh_runtime(notebook, executions):
    returncode, output, seconds = executions[notebook]
    assert returncode == 0, f"{notebook} failed on a fresh runtime after {seconds:.0f} s:\n{output}"
