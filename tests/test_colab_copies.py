"""What Colab opens reads as plain Markdown: the chapters' copies in colab/, in sync and free of MyST."""

from __future__ import annotations

import json
import sys

import pytest

import colab_copies
from colab_copies import CHAPTERS, COPIES, ROLE, ROOT, myst_left

sys.path.insert(0, str(ROOT / "book" / "_ext"))
import colab_launch  # noqa: E402

BOOK = colab_copies.book_url()


def _cells(path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_colab_copy_is_up_to_date(chapter):
    copy = colab_copies.copy_path(chapter)
    assert copy.exists() and copy.read_text() == colab_copies.dumps(colab_copies.colab_copy(chapter)), (
        f"{copy.relative_to(ROOT)} is not the copy of {chapter.name}: run `make colab`")


def test_there_is_a_copy_per_chapter_and_nothing_else():
    assert sorted(path.name for path in COPIES.iterdir()) == [chapter.name for chapter in CHAPTERS]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_what_colab_opens_has_no_myst_and_no_outputs(chapter):
    cells = _cells(colab_copies.copy_path(chapter))
    for number, cell in enumerate(cells):
        source = "".join(cell["source"])  # code may display Markdown: no roles there either
        left = myst_left(source) if cell["cell_type"] == "markdown" else ROLE.findall(source)
        assert not left, f"{chapter.name}, cell {number}: MyST markup Colab shows raw: {left}"
        assert not cell.get("outputs"), f"{chapter.name}, cell {number}: a stored output"
    code = lambda cells: ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]  # noqa: E731
    assert code(cells) == code(_cells(chapter)), "the copy runs other code than the chapter"


@pytest.mark.parametrize("myst", [
    "as shown by {cite}`ronneberger2015unet`.", "{cite:t}`long2015fcn` showed", "see {doc}`performance`",
    "the {func}`~unet_course.tiling.predict_tiled` function", "```{admonition} Solution\n:class: dropdown\nx\n```",
    ":::{note}\nx\n:::", "(my-label)=\n# Title", "% a comment", "+++", "{{ substitution }}", "   ```{math}\nx\n```",
])
def test_the_check_finds_every_kind_of_myst(myst):
    assert myst_left(myst)


def test_the_check_leaves_plain_markdown_alone():
    plain = ("# Title\n\nMath $w(\\mathbf{x})$ and $$\\sum_i x_i$$, a [link](https://example.org), `code {x}`,\n"
             "```python\nprint(f'{x}')\n```\n<details>\n<summary>Solution</summary>\n\ntext\n\n</details>\n> **Note**\n")
    assert not myst_left(plain)


def test_citations_read_as_in_the_book_and_link_to_its_references():
    one = colab_copies.convert_roles("the paper {cite}`ronneberger2015unet`.", "book/x")
    assert one == f"the paper ([Ronneberger et al., 2015]({BOOK}book/intro.html#cite-ronneberger2015unet))."
    two = colab_copies.convert_roles("{cite}`cardona2010isbi,arganda2015crowdsourcing`", "book/x")
    assert two.startswith("([Cardona et al., 2010](") and "; [Arganda-Carreras et al., 2015](" in two
    assert colab_copies.convert_roles("{cite:t}`long2015fcn`", "book/x").startswith("[Long et al. (2015)](")
    assert colab_copies.convert_roles("{cite:t}`ciresan2012deep`", "book/x").startswith("[Cireşan et al. (2012)](")
    with pytest.raises(ValueError, match="not in references.bib"):
        colab_copies.convert_roles("{cite}`nobody2099`", "book/x")


def test_cross_references_and_api_roles_become_links_into_the_book():
    convert = colab_copies.convert_roles
    assert convert("{doc}`the page <performance>`", "book/x") == f"[the page]({BOOK}book/performance.html)"
    assert convert("{func}`~unet_course.tiling.predict_tiled`", "book/x") == (
        f"[`predict_tiled()`]({BOOK}book/api.html#unet_course.tiling.predict_tiled)")
    assert convert("{func}`~unet_course.metrics.iou`", "book/x").endswith("#unet_course.metrics.pixel.iou)")
    assert convert("{mod}`unet_course.flops`", "book/x") == (
        f"[`unet_course.flops`]({BOOK}book/api.html#module-unet_course.flops)")
    assert convert("{math}`a^2`", "book/x") == "$a^2$"
    assert convert("the [table](paper_vs_course.md) and [one row](paper_vs_course.md#training)", "book/x") == (
        f"the [table]({BOOK}book/paper_vs_course.html) and [one row]({BOOK}book/paper_vs_course.html#training)")
    assert convert("[elsewhere](https://example.org/page.md)", "book/x") == "[elsewhere](https://example.org/page.md)"
    for unknown in ("{ref}`somewhere`", "{doc}`no-such-page`", "{func}`unet_course.no_such_function`",
                    "[a page](no_such_page.md)"):
        with pytest.raises((ValueError, AttributeError)):
            convert(unknown, "book/x")


def test_admonitions_become_details_or_quotes():
    dropdown = colab_copies.convert_markdown(
        "Try it.\n\n````{admonition} Solution\n:class: dropdown\n\nSee {cite}`long2015fcn`:\n\n```python\nx = 1\n```\n````\n",
        "book/x")
    assert dropdown.startswith("Try it.\n\n<details>\n<summary>Solution</summary>\n\nSee ([Long et al., 2015](")
    assert "```python\nx = 1\n```\n\n</details>\n" in dropdown and not myst_left(dropdown)
    note = colab_copies.convert_markdown(":::{note}\nTwo\n\nparagraphs.\n:::", "book/x")
    assert note == "> **Note**\n>\n> Two\n>\n> paragraphs."
    kept = "```python\nprint('{cite}`x`')\n```"
    assert colab_copies.convert_markdown(kept, "book/x") == kept  # code is shown as it is
    with pytest.raises(ValueError, match="no plain-Markdown form for the directive"):
        colab_copies.convert_markdown("```{figure} a.png\n```", "book/x")


def test_launch_button_opens_the_copy():
    url = "https://colab.research.google.com/github/o/r/blob/main/book/03_unet_architecture.ipynb"
    assert colab_launch.copy_url(url, "book/03_unet_architecture") == (
        "https://colab.research.google.com/github/o/r/blob/main/colab/03_unet_architecture.ipynb")
    with pytest.raises(ValueError):
        colab_launch.copy_url(url, "book/04_augmentation")
