"""Sphinx extension: a chapter's Colab button opens its plain-Markdown copy, `colab/NN_*.ipynb`.

Colab renders no MyST, so the book's citations, cross-references and admonitions would show as
raw markup there; `make colab` writes copies in plain Markdown (tests/colab_copies.py). The
theme builds the button from the page's own path; this moves it to the copy, where one exists.
"""

from pathlib import Path

COPIES = "colab"  # at the top of the repository: generated notebooks, not pages of the book


def copy_url(url: str, pagename: str) -> str:
    """``…/blob/main/book/03_x.ipynb`` → ``…/blob/main/colab/03_x.ipynb``."""
    name = pagename.rpartition("/")[2]
    original = f"/{pagename}.ipynb"
    if not url.endswith(original):
        raise ValueError(f"the Colab button {url} does not open {pagename}.ipynb")
    return url[: -len(original)] + f"/{COPIES}/{name}.ipynb"


def _point_at_copy(app, pagename, templatename, context, doctree):
    name = pagename.rpartition("/")[2]
    if not (Path(app.srcdir) / COPIES / f"{name}.ipynb").exists():
        return
    colab = app.config.html_theme_options.get("launch_buttons", {}).get("colab_url", "").rstrip("/")
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []):
            if colab and button.get("url", "").startswith(colab):
                button["url"] = copy_url(button["url"], pagename)


def setup(app):
    # after sphinx-book-theme adds its launch buttons (priority 501)
    app.connect("html-page-context", _point_at_copy, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
