"""The book builds with warnings as errors, and every chapter in the toc becomes a page."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for entry in toc["chapters"]]


@pytest.fixture(scope="module")
def html(built_book) -> Path:
    return built_book


def test_every_toc_entry_has_a_page(html):
    missing = [name for name in _toc_files() if not (html / f"{name}.html").exists()]
    assert not missing


def test_notebook_pages_show_their_figures_and_launch_on_colab(html):
    notebooks = [name for name in _toc_files() if (ROOT / f"{name}.ipynb").exists()]
    assert notebooks
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    for name in notebooks:
        page = (html / f"{name}.html").read_text()
        assert re.search(r'<img[^>]+src="[^"]*_images/', page), f"{name}: no figure rendered"
        stem = name.rpartition("/")[2]  # Colab opens the chapter's plain-Markdown copy
        colab = f"https://colab.research.google.com/github/{owner_repo}/blob/main/colab/{stem}.ipynb"
        assert colab in page, f"{name}: no Colab launch button pointing at the notebook's Colab copy"


def test_links_of_the_colab_copies_land_in_the_book(html):
    """Citations, cross-references and API names in the Colab copies link to pages and anchors the book has."""
    import colab_copies

    links = {link for copy in colab_copies.COPIES.glob("*.ipynb")
             for link in re.findall(r"\]\((" + re.escape(colab_copies.book_url()) + r"[^)\s]+)\)", copy.read_text())}
    assert sum("#cite-" in link for link in links) > 10 and any("api.html#" in link for link in links)
    for link in links:
        page, _, anchor = link.removeprefix(colab_copies.book_url()).partition("#")
        assert (html / page).exists(), f"{link}: no such page"
        assert not anchor or f'id="{anchor}"' in (html / page).read_text(), f"{link}: no such anchor"
    chapter = (html / "book" / "07_evaluation.html").read_text()  # the book itself keeps its {cite} links
    assert 'class="reference internal" href="intro.html#cite-ronneberger2015unet"' in chapter


def test_api_page_documents_the_library(html):
    page = (html / "book" / "api.html").read_text()
    for name in ("get_budget", "synthetic_cells", "ISBI2012", "overlay", "UNet", "predict_tiled", "elastic_deform",
                 "unet_weight_map", "weighted_cross_entropy", "fit", "warping_error", "convolutionalize"):
        assert name in page


def test_repository_url_in_one_place():
    """Only _config.yml holds the address; elsewhere it appears inside the install line made from it."""
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    tracked = subprocess.run(listing, cwd=ROOT, capture_output=True, text=True).stdout.split()
    install_line = re.compile(r"unet-course(\[[a-z,]*\])? @ git\+" + re.escape(REPOSITORY) + "@")
    holders = [name for name in tracked
               if name != "tests/test_book.py" and (ROOT / name).is_file()
               and REPOSITORY in install_line.sub("", (ROOT / name).read_text(errors="ignore"))]
    # The installed package cannot read _config.yml, so the registry of published weights keeps a
    # copy of the address; tests/test_pretrained.py fails when the two differ.
    assert sorted(holders) == ["_config.yml", "unet_course/hub.py"]
