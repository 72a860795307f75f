"""Colab's GPU runtime rebuilt on this machine: the versions Colab preinstalls, in a new environment.

`tests/colab_packages.txt` keeps the part of Colab's published package list (googlecolab/backend-info,
`pip-freeze.gpu.txt`) that unet-course, its extras and the Jupyter kernel touch, with the commit, date
and Python it was taken from. `tests/test_fresh_runtime.py` builds its runtime from it. Refresh the list
(network, a few minutes): `.venv/bin/python tests/colab_runtime.py`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "tests" / "colab_packages.txt"
SOURCE = "googlecolab/backend-info"

# torch and its GPU stack come from this machine, as available: Colab's own are CUDA builds, several GB.
AS_AVAILABLE = re.compile(r"torch|torchvision|triton|nvidia-.*|cuda-.*")
# The extras a Colab reader may install. `book` and `dev` build and test the course on a contributor's
# machine, pinned by constraints.txt: `book` asks for ipywidgets 8 and ipykernel 6.20, above Colab's.
COLAB_EXTRAS = ("widgets", "smp", "export", "bench")


def normal(name: str) -> str:
    """A distribution's name as pip compares it: ``PyYAML`` → ``pyyaml``, ``typing_extensions`` → ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Packages:
    """The stored list: ``versions`` (normal name → version), Colab's Python, and where the list came from."""

    versions: dict[str, str]
    python: str
    source: str


def read_packages(path: Path = PACKAGES) -> Packages:
    """Parse `colab_packages.txt`: ``# python: X.Y.Z``, ``# source: …`` and ``name==version`` lines."""
    text = path.read_text()
    python = re.search(r"^# python: (\d+\.\d+\.\d+)$", text, re.MULTILINE)
    source = re.search(r"^# source: (.+)$", text, re.MULTILINE)
    if not python or not source:
        raise ValueError(f"{path}: no '# python: X.Y.Z' or '# source: …' line; refresh it with python {__file__}")
    versions = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            versions[normal(name)] = version
    return Packages(versions, python.group(1), source.group(1))


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _has_torch(python: Path) -> bool:
    probe = subprocess.run([str(python), "-c", "import torch, torchvision"], capture_output=True)
    return probe.returncode == 0


def _candidates(minor: str) -> list[Path]:
    """Interpreters of Python ``minor`` on this machine: ``$UNET_COURSE_COLAB_PYTHON``, PATH, pyenv."""
    found = [Path(os.environ["UNET_COURSE_COLAB_PYTHON"])] if os.environ.get("UNET_COURSE_COLAB_PYTHON") else []
    found += [Path(path) for path in [shutil.which(f"python{minor}")] if path]
    pyenv = Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser() / "versions"
    found += sorted(pyenv.glob(f"{minor}.*/bin/python{minor}"))
    return found


def pick_python(colab_python: str) -> tuple[Path, str]:
    """The interpreter to build on, and a line saying why.

    Colab's Python where this machine has it with torch and torchvision (torch is the one package
    taken as available, not downloaded: a CUDA build for another Python is several GB); this
    interpreter, whose torch is linked in, where it already is Colab's Python or none is found.
    """
    minor, here = _minor(colab_python), f"{sys.version_info.major}.{sys.version_info.minor}"
    if here == minor:
        return Path(sys.executable), f"Python {here}, as on Colab"
    without_torch = []
    for python in _candidates(minor):
        if _has_torch(python):
            return python, f"Python {minor} ({python}), as on Colab"
        without_torch.append(str(python))
    reason = (f"Python {minor} at {', '.join(without_torch)} has no torch, and torch for it would be a "
              f"download of several GB" if without_torch else f"no Python {minor} on this machine")
    return Path(sys.executable), f"Python {here}, not Colab's {colab_python}: {reason}"


_LINKS = r"""
import importlib.metadata, json, re, sys
from pathlib import Path
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
keep = re.compile(sys.argv[1])
def normal(name): return re.sub(r"[-_.]+", "-", name).lower()
seen, todo, tops, versions, needs = set(), [("torch", ()), ("torchvision", ())], set(), {}, {}
while todo:  # torch's own requirements, with the extras they ask for (torch names cuda-toolkit[...])
    name, extras = todo.pop()
    if (normal(name), extras) in seen or not keep.fullmatch(normal(name)):
        continue
    seen.add((normal(name), extras))
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        continue
    versions[normal(name)] = distribution.version
    site = Path(distribution.locate_file(""))
    tops |= {str(site / Path(file).parts[0]) for file in distribution.files or []
             if not str(file).startswith("..") and Path(file).parts[0] != "__pycache__" and not str(file).endswith(".pth")}
    for line in distribution.requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": extra}) for extra in extras or ("",)):
            todo.append((requirement.name, tuple(sorted(requirement.extras))))
            if not keep.fullmatch(normal(requirement.name)):  # what the torch stack asks of other packages
                needs[normal(requirement.name)] = f"{needs.get(normal(requirement.name), '')},{requirement.specifier}"
print(json.dumps({"tops": sorted(tops), "versions": versions, "needs": needs}))
"""


def link_torch(python: Path, folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Link ``python``'s torch, torchvision and their GPU stack into ``folder``, as Colab has them preinstalled.

    Returns the versions linked (``normal name → version``) and what they require of other
    packages (``normal name → specifier``, e.g. ``setuptools → >=77.0.3``).
    """
    folder.mkdir(parents=True)
    found = json.loads(_run([python, "-c", _LINKS, AS_AVAILABLE.pattern]).stdout)
    for top in found["tops"]:
        target = folder / Path(top).name
        if Path(top).exists() and not target.exists():
            target.symlink_to(top)
    return found["versions"], {name: spec.strip(",") for name, spec in found["needs"].items()}


def _install_pins(python: Path, pins: dict[str, str], linked: dict[str, str], folder: Path) -> set[str]:
    """Install ``pins`` exactly; a version this Python cannot have becomes ``<=`` (the newest before it).

    The linked torch stack is pinned too, so that pip fails rather than fetch another torch.
    """
    relaxed: set[str] = set()
    while True:  # returns what it had to relax
        lines = [f"{name}{'<=' if name in relaxed else '=='}{version}" for name, version in sorted(pins.items())]
        (folder / "pins.txt").write_text("\n".join(lines) + "\n")
        (folder / "linked.txt").write_text("".join(f"{name}{'' if version[0] in '<>=!~' else '=='}{version}\n"
                                                   for name, version in sorted(linked.items())))
        result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-compile", "-r",
                                 str(folder / "pins.txt"), "-c", str(folder / "linked.txt")], capture_output=True, text=True)
        if result.returncode == 0:
            return relaxed
        missing = re.search(r"No matching distribution found for ([A-Za-z0-9_.\-]+)==", result.stderr)
        if not missing or normal(missing.group(1)) in relaxed or len(relaxed) >= 10:
            raise RuntimeError(f"pip could not install Colab's packages:\n{result.stderr[-3000:]}")
        relaxed.add(normal(missing.group(1)))


def _purelib(python: Path) -> Path:
    return Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())


def new_environment(folder: Path, python: Path, layers: list[Path], pip: bool = False) -> Path:
    """A venv at ``folder`` that also sees ``layers`` (after its own site-packages), like Colab's system site.

    Without ``pip``, the venv runs the pip of its layers: a venv's own pip and setuptools would
    shadow Colab's, and pip would upgrade them for a package that asks for newer ones.
    """
    _run([python, "-m", "venv", folder] + ([] if pip else ["--without-pip"]))
    venv_python = folder / "bin" / "python"
    (_purelib(venv_python) / "colab_preinstalled.pth").write_text("".join(f"{layer}\n" for layer in layers))
    return venv_python


@dataclass
class Runtime:
    """Colab's preinstalled stack: ``layers`` to put on a new environment's path, what they hold, and a summary."""

    python: Path  # the interpreter new environments are made from
    base: Path  # the python of the environment holding Colab's packages
    layers: list[Path]
    installed: dict[str, str]  # normal name → version, everything preinstalled
    summary: str
    on_colabs_python: bool
    differences: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (Colab's, ours)
    reasons: dict[str, str] = field(default_factory=dict)  # name → why the build could not keep Colab's


def build(folder: Path, packages: Packages | None = None) -> Runtime:
    """Colab's runtime in ``folder``: torch as available, every other stored package at Colab's version.

    A package whose Colab version this Python cannot install gets the newest release before it
    (listed in ``differences``, and in the summary).
    """
    packages = packages or read_packages()
    python, why = pick_python(packages.python)
    linked, needs = link_torch(python, folder / "torch")
    base = new_environment(folder / "colab", python, [folder / "torch"], pip=True)
    same = _minor(packages.python) == _minor(_run([python, "-c", "import platform; print(platform.python_version())"]).stdout)
    pins = {name: version for name, version in packages.versions.items() if not AS_AVAILABLE.fullmatch(name)}
    # a newer torch than Colab's may need newer packages than Colab's (torch 2.14 asks for setuptools 77):
    # those follow torch, and the summary lists them
    follow = {name: needs[name] for name, version in pins.items()
              if name in needs and not SpecifierSet(needs[name]).contains(version, prereleases=True)}
    relaxed = _install_pins(base, {name: version for name, version in pins.items() if name not in follow},
                            {**linked, **follow}, folder)
    reasons = {**{name: f"torch {linked['torch']} needs {spec}" for name, spec in follow.items()},
               **{name: "Colab's needs a newer Python" for name in relaxed}}
    listing = json.loads(_run([base, "-m", "pip", "list", "--format", "json"]).stdout)
    installed = {normal(item["name"]): item["version"] for item in listing}
    differences = {name: (version, installed.get(name, "missing")) for name, version in packages.versions.items()
                   if not AS_AVAILABLE.fullmatch(name) and installed.get(name) != version}
    versions = ", ".join(f"{name} {installed[name]}" for name in
                         ("torch", "torchvision", "numpy", "scipy", "scikit-image", "matplotlib", "ipywidgets",
                          "ipython", "ipykernel", "jupyter-client", "protobuf") if name in installed)
    summary = (f"Colab's runtime ({packages.source}, Python {packages.python}) rebuilt on {why}; torch from "
               f"this machine; {versions}" + "".join(f"; {name} {ours} (Colab: {theirs}; {reasons.get(name, '?')})"
                                                      for name, (theirs, ours) in sorted(differences.items())))
    return Runtime(python, base, [_purelib(base), folder / "torch"], installed, summary, same, differences, reasons)


# --- refreshing the stored list ---------------------------------------------------------------

RAW = "https://raw.githubusercontent.com/googlecolab/backend-info/{commit}/{path}"
COMMITS = "https://api.github.com/repos/googlecolab/backend-info/commits?path=pip-freeze.gpu.txt&per_page=1"


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read().decode()


def relevant(freeze: str) -> dict[str, tuple[str, str]]:
    """The lines of a `pip freeze` that matter here: ``normal name → (name, version)``.

    What pip resolves, with those versions as constraints, for unet-course with the extras a Colab
    reader installs, the kernel and ipywidgets; plus torch and torchvision. Resolved for this
    Python: a constraint it cannot meet (a version for a newer Python) is dropped, not followed.
    """
    import tempfile

    lines = {normal(found.group(1)): (found.group(1), found.group(2)) for found in
             (re.match(r"([A-Za-z0-9_.\-]+)==([^+\s]+)", line) for line in freeze.splitlines()) if found}
    dropped: set[str] = set()
    with tempfile.TemporaryDirectory() as scratch:
        constraints, report = Path(scratch) / "colab.txt", Path(scratch) / "report.json"
        while True:
            constraints.write_text("".join(f"{name}=={version}\n" for key, (name, version) in lines.items()
                                           if not AS_AVAILABLE.fullmatch(key) and key not in dropped))
            result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                                     "--report", str(report), "-c", str(constraints),
                                     f"{ROOT}[{','.join(COLAB_EXTRAS)}]", "ipykernel", "ipywidgets"],
                                    capture_output=True, text=True)
            missing = re.search(r"No matching distribution found for ([A-Za-z0-9_.\-]+)|"
                                r"requested \(constraint\) ([A-Za-z0-9_.\-]+)==", result.stdout + result.stderr)
            if result.returncode == 0 or not missing or len(dropped) >= 10:
                break
            dropped.add(normal(missing.group(1) or missing.group(2)))
        if result.returncode != 0:
            raise RuntimeError(f"pip could not resolve on Colab's versions:\n{result.stderr[-3000:]}")
        wanted = {normal(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    return {key: lines[key] for key in sorted(wanted | dropped | {"torch", "torchvision"}) if key in lines}


def refresh(path: Path = PACKAGES) -> None:
    """Rewrite `colab_packages.txt` from the newest `pip-freeze.gpu.txt` of googlecolab/backend-info."""
    commit = json.loads(_fetch(COMMITS))[0]
    sha, date = commit["sha"], commit["commit"]["committer"]["date"][:10]
    freeze = _fetch(RAW.format(commit=sha, path="pip-freeze.gpu.txt"))
    python = re.search(r"^Python (\d+\.\d+\.\d+)$", _fetch(RAW.format(commit=sha, path="os-info-gpu.txt")),
                       re.MULTILINE).group(1)
    header = (f"# Colab's GPU runtime: the preinstalled packages that unet-course, the extras a Colab reader\n"
              f"# installs ({', '.join(COLAB_EXTRAS)}), the kernel and ipywidgets touch, at Colab's versions.\n"
              f"# Refresh: .venv/bin/python tests/colab_runtime.py\n"
              f"# source: {SOURCE} pip-freeze.gpu.txt at {sha[:12]}, {date}\n"
              f"# python: {python}\n")
    path.write_text(header + "".join(f"{name}=={version}\n" for name, version in relevant(freeze).values()))


if __name__ == "__main__":
    refresh()
    print(f"{PACKAGES.relative_to(ROOT)}: {len(read_packages().versions)} packages")
