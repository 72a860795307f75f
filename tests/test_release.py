"""The release, rehearsed offline: workflows, sdist and wheel, versions, checksums.

The GitHub workflows must validate against GitHub's schema and pass `zizmor`; the sdist
and wheel that `python -m build` makes from a clean copy of the tree must pass
`twine check`, install and import; the version must be the same in
`unet_course.__version__`, the built metadata, the changelog and the tag. The shell steps
of release.yml that carry an `id` are run here as they run on GitHub.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import unet_course

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
VERSION = unet_course.__version__
RELEASE_TOOLS = ("build", "twine", "check-jsonschema", "zizmor")


def _workflow(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); put it back under its name.
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True)
    return workflow


def _step(workflow: dict, step_id: str) -> dict:
    return next(step for job in workflow["jobs"].values() for step in job.get("steps", [])
                if step.get("id") == step_id)


def _run_step(step: dict, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a workflow step's shell as GitHub does (`bash -e`), with its `env` replaced by ours."""
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def _tool(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- the workflows ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ci.yml", "book.yml", "release.yml"])
def test_workflow_matches_github_schema(name):
    result = _tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOWS / name))
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "ci.yml"
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("runs-on:", "runs_on:"))
    result = _tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken))
    assert result.returncode != 0


def test_workflows_pass_zizmor():
    result = _tool("zizmor", "--offline", "--no-progress", str(WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_flags_a_checkout_that_keeps_its_credentials(tmp_path):
    text = (WORKFLOWS / "ci.yml").read_text()
    keep_out = "        with:\n          persist-credentials: false\n"
    assert keep_out in text
    (tmp_path / "ci.yml").write_text(text.replace(keep_out, ""))
    result = _tool("zizmor", "--offline", "--no-progress", str(tmp_path / "ci.yml"))
    assert result.returncode != 0 and "artipacked" in result.stdout


def test_every_action_is_pinned_to_a_commit():
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if "uses:" in line:
                assert re.search(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40}  # v\d", line), f"{path.name}: {line.strip()}"


def test_workflows_grant_nothing_by_default():
    for path in WORKFLOWS.glob("*.yml"):
        workflow = _workflow(path.name)
        assert workflow["permissions"] == {}, path.name
        for name, job in workflow["jobs"].items():
            assert "permissions" in job, f"{path.name}: job {name} must say which permissions it needs"


def test_ci_runs_the_readme_test_command_like_ci_run():
    ci = _workflow("ci.yml")
    job = ci["jobs"]["test"]
    assert job["strategy"]["matrix"]["python-version"] == ["3.11", "3.13"]
    assert job["steps"][-1]["run"].strip() == "make test"
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == "make test"
    assert "make test" in (ROOT / "README.md").read_text()


def test_book_workflow_deploys_what_make_book_builds():
    book = _workflow("book.yml")
    build, deploy = book["jobs"]["build"], book["jobs"]["deploy"]
    assert any(step.get("run", "").strip() == "make book" for step in build["steps"])
    upload = next(step for step in build["steps"] if step.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["steps"][-1]["uses"].startswith("actions/deploy-pages@")


def test_release_publishes_by_trusted_publishing_after_verifying_the_checkpoints():
    text = (WORKFLOWS / "release.yml").read_text()
    release = _workflow("release.yml")
    jobs = release["jobs"]
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert "secrets." not in text and "password" not in text  # no token: PyPI trusts the OIDC identity
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}
    assert jobs["pypi"]["steps"][-1]["uses"].startswith("pypa/gh-action-pypi-publish@")
    assert set(jobs["pypi"]["needs"]) == {"dist", "weights"}
    assert "pypi" in jobs["github-release"]["needs"]
    weight_steps = [step.get("run", "") for step in jobs["weights"]["steps"]]
    verify = weight_steps.index(".venv/bin/python -m unet_course.publish verify weights")
    assert weight_steps.index("mkdir -p weights && cp unet_course/weights/*.pt weights/") < verify
    assert jobs["weights"]["steps"][-1]["uses"].startswith("actions/upload-artifact@")


# --- the distributions ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist and wheel built by `python -m build` from a clean copy of the tree (as a clone has it)."""
    source = tmp_path_factory.mktemp("source")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    # No isolation: the build backend comes from the test environment, so the test needs no network.
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _wheel(dist: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(next(dist.glob("*.whl")))


def test_build_makes_one_sdist_and_one_wheel_named_by_the_version(dist):
    assert sorted(path.name for path in dist.iterdir()) == [
        f"unet_course-{VERSION}-py3-none-any.whl", f"unet_course-{VERSION}.tar.gz"]


def test_twine_check_passes(dist):
    result = _tool("twine", "check", "--strict", *map(str, sorted(dist.iterdir())))
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheel_holds_the_package_and_its_data_but_no_tests_or_notebooks(dist):
    names = set(_wheel(dist).namelist())
    assert not [name for name in names if name.startswith(("tests/", "book/", "benchmarks/")) or name.endswith(".ipynb")]
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "unet_course"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    package_files = {name for name in tracked if (ROOT / name).is_file()}
    assert {name for name in package_files if name.endswith(".py")} <= names
    missing_data = {name for name in package_files if not name.endswith(".py")} - names
    assert not missing_data, f"package data left out of the wheel: {missing_data}"
    entry_points = _wheel(dist).read(f"unet_course-{VERSION}.dist-info/entry_points.txt").decode()
    assert "unet-course = unet_course.cli:main" in entry_points


def test_sdist_installs_in_a_fresh_environment_and_imports(dist, tmp_path):
    """A source install, as pip does it from PyPI; torch and friends come from the test environment."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site_packages = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies are seen behind the venv's own packages; this checkout's editable install is not.
    (Path(site_packages) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    sdist = next(dist.glob("*.tar.gz"))
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
                              "--no-deps", "--no-build-isolation", str(sdist)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    code = ("import importlib.metadata, unet_course\n"
            "[script] = importlib.metadata.entry_points(group='console_scripts', name='unet-course')\n"
            "assert callable(script.load())\n"
            "print(unet_course.__version__, unet_course.__file__)\n")
    run = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    version, location = run.stdout.split()
    assert version == VERSION and Path(location).is_relative_to(venv)
    assert (venv / "bin" / "unet-course").is_file()


# --- one version everywhere -------------------------------------------------------------------

def _changelog_versions() -> list[str]:
    return re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), flags=re.MULTILINE)


def test_version_is_written_once_and_agrees_everywhere(dist):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "unet_course.__version__"}
    metadata = _wheel(dist).read(f"unet_course-{VERSION}.dist-info/METADATA").decode()
    assert re.search(r"^Version: (.+)$", metadata, flags=re.MULTILINE).group(1) == VERSION
    assert _changelog_versions()[0] == VERSION


def test_changelog_entries_are_dated_newest_first():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\] - (\d{4}-\d{2}-\d{2})$", text, flags=re.MULTILINE)
    assert [version for version, _ in headings] == _changelog_versions()
    dates = [date for _, date in headings]
    assert dates == sorted(dates, reverse=True)


def test_the_book_footer_shows_the_version():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import version_footer
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    config = SimpleNamespace(version="", release="", html_theme_options={
        "repository_url": "https://github.com/owner/name", "repository_branch": "main"})
    version_footer._add_version(None, config)
    assert config.version == config.release == VERSION
    assert f">unet-course {VERSION}</a>" in config.html_theme_options["extra_footer"]
    assert 'href="https://github.com/owner/name/blob/main/CHANGELOG.md"' in config.html_theme_options["extra_footer"]
    book = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert book["sphinx"]["local_extensions"]["version_footer"] == "book/_ext"


def test_colab_install_line_names_this_version_once_on_pypi(monkeypatch):
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        setup_cells = pytest.importorskip("setup_cells")
    finally:
        sys.path.remove(str(ROOT / "tests"))
    if not hasattr(setup_cells, "ON_PACKAGE_INDEX"):
        pytest.skip("the install-line generator has no package-index switch")
    monkeypatch.setattr(setup_cells, "ON_PACKAGE_INDEX", True)
    assert setup_cells.requirement(["widgets", "smp"]) == f"unet-course[smp,widgets]=={VERSION}"


# --- addresses and tools ------------------------------------------------------------------------

def test_book_address_is_the_repositorys_pages_site_and_the_readme_links_it():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    owner, name = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?", config["repository"]["url"]).groups()
    address = config["html"]["baseurl"]
    assert address == f"https://{owner.lower()}.github.io/{name}/"
    readme = (ROOT / "README.md").read_text()
    assert f"<{address}>" in readme
    assert "[![PyPI](https://img.shields.io/pypi/v/unet-course)](https://pypi.org/project/unet-course/)" in readme


def test_release_tools_are_in_the_dev_extra_constraints_and_environment():
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pinned = {line.split("==")[0].lower() for line in (ROOT / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    environment = (ROOT / "environment.yml").read_text()
    for tool in RELEASE_TOOLS:
        requirement = next((r for r in dev if re.split(r"[<>=!~ \[]", r)[0] == tool), None)
        assert requirement, f"{tool} missing from the dev extra"
        assert tool in pinned, f"{tool} has no pin in constraints.txt"
        assert f"- {requirement}\n" in environment, f"{requirement} missing from environment.yml"


# --- release.yml's own steps, run here ----------------------------------------------------------

@pytest.fixture()
def release_tree(dist, tmp_path) -> Path:
    shutil.copytree(dist, tmp_path / "dist")
    shutil.copy2(ROOT / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    return tmp_path


def test_release_accepts_the_tag_of_this_version_only(release_tree):
    step = _step(_workflow("release.yml"), "tag-matches-version")
    assert _run_step(step, release_tree, TAG=f"v{VERSION}").returncode == 0
    wrong = _run_step(step, release_tree, TAG="v99.0.0")
    assert wrong.returncode != 0 and "does not match the version built" in wrong.stdout
    (release_tree / "CHANGELOG.md").write_text("# Changelog\n")
    assert "CHANGELOG.md has no entry" in _run_step(step, release_tree, TAG=f"v{VERSION}").stdout


def test_release_notes_are_the_changelog_entry_of_the_tag(release_tree):
    step = _step(_workflow("release.yml"), "release-notes")
    assert _run_step(step, release_tree, TAG=f"v{VERSION}").returncode == 0
    notes = (release_tree / "release-notes.md").read_text()
    entry = (ROOT / "CHANGELOG.md").read_text().split(f"## [{VERSION}]", 1)[1].split("\n## [", 1)[0]
    assert notes.strip() and notes.strip() == entry.split("\n", 1)[1].strip()
    assert _run_step(step, release_tree, TAG="v99.0.0").returncode != 0


def test_release_refuses_a_checkpoint_that_differs_from_its_checksum(tmp_path):
    step = _step(_workflow("release.yml"), "check-assets")
    weights = tmp_path / "weights"
    weights.mkdir()
    files = {"unet-membranes.pt": b"weights", "unet-cells.pt": b"more weights"}
    for name, content in files.items():
        (weights / name).write_bytes(content)
    (weights / "SHA256SUMS").write_text(
        "".join(f"{hashlib.sha256(content).hexdigest()}  {name}\n" for name, content in files.items()))
    assert _run_step(step, tmp_path).returncode == 0
    (weights / "unet-cells.pt").write_bytes(b"tampered")
    assert _run_step(step, tmp_path).returncode != 0
    (weights / "unet-cells.pt").unlink()
    assert _run_step(step, tmp_path).returncode != 0


def test_release_checksums_come_from_the_registry(tmp_path):
    from unet_course import hub as pretrained
    step = _step(_workflow("release.yml"), "write-checksums")
    (tmp_path / "weights").mkdir()
    script = step["run"].replace(".venv/bin/python", sys.executable)
    result = _run_step({"run": script}, tmp_path)
    assert result.returncode == 0, result.stderr
    listed = [line.split("  ") for line in (tmp_path / "weights" / "SHA256SUMS").read_text().splitlines()]
    assert listed == [[entry["sha256"], entry["file"]] for entry in pretrained.PRETRAINED.values()]
