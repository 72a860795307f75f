"""The chapters as Colab opens them: plain Markdown, no stored outputs, written to `colab/`.

Colab renders Markdown with `$math$` but no MyST: a `{cite}` role or an admonition fence would show
as raw text. `make colab` (this file run as a script) writes `colab/NN_*.ipynb` from
`book/NN_*.ipynb`: citations become "(Author et al., Year)" linked to the book's reference list,
`{doc}` and API roles become links into the published book, dropdown admonitions `<details>`
blocks and other admonitions quotes with a bold title. Code cells are kept, without outputs: a
Colab reader runs them, Colab does not restore saved widget state, and copies of every figure
would double the repository. The book's Colab buttons open these copies
(`book/_ext/colab_launch.py`); `tests/test_colab_copies.py` fails when one is out of date.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
COPIES = ROOT / "colab"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))

ROLE = re.compile(r"\{([a-z]+(?::[a-z]+)?)\}`([^`]+)`")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})\s*(?:\{(?P<directive>[a-z-]+)\})?\s*(?P<rest>.*)$")
ADMONITIONS = {"admonition": "", "note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important",
               "warning": "Warning", "caution": "Caution", "attention": "Attention", "danger": "Danger",
               "error": "Error", "seealso": "See also"}
PYTHON_ROLES = {"mod", "func", "class", "meth", "attr", "data", "exc", "obj"}
# What no plain-Markdown reader renders: directive fences, targets, comments, block breaks, substitutions
# (line by line), and roles outside code.
MYST_BLOCKS = re.compile(r"^ {0,3}(`{3,}|~{3,}|:{3,})\s*\{|^\([^)\s]+\)=\s*$|^%|^\+\+\+|\{\{", re.MULTILINE)
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.*?[^`])\1(?!`)", re.DOTALL)


def myst_left(markdown: str) -> list[str]:
    """The MyST markup in ``markdown`` that Colab would show raw (fenced code and code spans excepted)."""
    found = [match.group(0) for match in MYST_BLOCKS.finditer(markdown)]
    lines, prose, fence = markdown.splitlines(), [], None
    for line in lines:
        opening = FENCE.match(line)
        if fence is None and opening and opening["fence"][0] != ":" and opening["directive"] is None:
            fence = re.compile(rf"^ {{0,3}}{re.escape(opening['fence'][0])}{{{len(opening['fence'])},}}\s*$")
        elif fence is not None and fence.match(line):
            fence = None
        elif fence is None:
            prose.append(line)
    text = "\n".join(prose)
    spans = [match.span(2) for match in CODE_SPAN.finditer(text)]
    found += [match.group(0) for match in ROLE.finditer(text)
              if not any(start <= match.start() < end for start, end in spans)]
    return found


def book_url() -> str:
    """Where the book is published (`html.baseurl` of `_config.yml`), ending in a slash."""
    return yaml.safe_load((ROOT / "_config.yml").read_text())["html"]["baseurl"].rstrip("/") + "/"


def _page(docname: str) -> str:
    return f"{book_url()}{docname}.html"


@cache
def _bibliography() -> tuple[str, dict]:
    """The page holding ``{bibliography}`` and the entries of `references.bib`."""
    from pybtex.database import parse_file

    pages = [path for path in BOOK.glob("*.md") if re.search(r"^`{3,}\{bibliography\}", path.read_text(), re.MULTILINE)]
    if len(pages) != 1:
        raise ValueError(f"expected one page with a {{bibliography}} directive in book/, found {len(pages)}")
    return f"book/{pages[0].stem}", parse_file(str(ROOT / "references.bib")).entries


def _authors(key: str) -> tuple[str, str]:
    from pybtex.richtext import Text

    page, entries = _bibliography()
    if key not in entries:
        raise ValueError(f"citation {key!r} is not in references.bib")
    entry = entries[key]
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [Text.from_latex(" ".join(person.last_names)).render_as("text") for person in people]
    if not names:
        names = [entry.fields.get("organization", key)]
    who = names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else f"{names[0]} et al."
    return who, entry.fields.get("year", "n.d.")


def citation(keys: str, textual: bool = False) -> str:
    """``{cite}`a,b``` as the book's author-year text, each linked to its entry in the reference list."""
    page, _ = _bibliography()
    parts = []
    for key in (key.strip() for key in keys.split(",")):
        who, year = _authors(key)
        link = f"{_page(page)}#cite-{key.lower()}"
        parts.append(f"[{who} ({year})]({link})" if textual else f"[{who}, {year}]({link})")
    return "; ".join(parts) if textual else f"({'; '.join(parts)})"


def _title(docname: str) -> str:
    path = next(ROOT.glob(f"{docname}.*"))
    text = path.read_text()
    if path.suffix == ".ipynb":
        text = "".join(next(c for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")["source"])
    return re.search(r"^# (.+)$", text, re.MULTILINE).group(1).strip()


def document_link(target: str, here: str) -> str:
    """``{doc}`text <target>``` as a link to the published page."""
    found = re.fullmatch(r"(.*?)\s*<([^>]+)>", target)
    text, target = (found.group(1), found.group(2)) if found else (None, target)
    docname = target.lstrip("/") if target.startswith("/") else str(Path(here).parent / target)
    if not list(ROOT.glob(f"{docname}.*")):
        raise ValueError(f"{here}: {{doc}} target {target!r} is not a page of the book")
    return f"[{text or _title(docname)}]({_page(docname)})"


@cache
def _api_modules() -> set[str]:
    return set(re.findall(r"^\.\. automodule:: (\S+)", (BOOK / "api.md").read_text(), re.MULTILINE))


def _python_object(name: str) -> tuple[str, object]:
    """The object ``name`` names, found by importing its longest module prefix."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return ".".join(parts[:cut]), obj
    raise ValueError(f"{name!r} names nothing importable")


def api_link(role: str, target: str) -> str:
    """``{func}`~unet_course.x.f``` as `` [`f()`](…/api.html#unet_course.x.f) `` on the published API page."""
    found = re.fullmatch(r"(.*?)\s*<([^>]+)>", target)
    text, target = (found.group(1), found.group(2)) if found else (None, target)
    short, name = target.startswith("~"), target.lstrip("~")
    module, obj = _python_object(name)
    if role == "mod":
        anchor, documented = f"module-{name}", name
    else:
        documented = getattr(obj, "__module__", module)
        anchor = f"{documented}.{getattr(obj, '__qualname__', name.rsplit('.', 1)[-1])}"
    if documented not in _api_modules():
        raise ValueError(f"{{{role}}}`{target}`: module {documented} is not on the API page (book/api.md)")
    label = text or (name.rsplit(".", 1)[-1] if short else name)
    if not text and role in ("func", "meth"):
        label += "()"
    return f"[`{label}`]({_page('book/api')}#{anchor})"


PAGE_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|#|/)([^)\s#]+)\.(?:md|ipynb)(#[^)\s]*)?\)")


def page_link(match: re.Match, here: str) -> str:
    """A Markdown link to another page of the book, ``[text](page.md)``, as a link to the published page."""
    docname = os.path.normpath(Path(here).parent / match.group(1))
    if not list(ROOT.glob(f"{docname}.*")):
        raise ValueError(f"{here}: the link target {match.group(0)[2:-1]!r} is not a page of the book")
    return f"]({_page(docname)}{match.group(2) or ''})"


def convert_roles(text: str, here: str) -> str:
    """Every MyST role in ``text`` as plain Markdown, and links to pages of the book as links to the
    published pages; an unknown role is an error, never left raw."""
    def replace(match: re.Match) -> str:
        role, target = match.groups()
        if role in ("cite", "cite:p", "cite:t"):
            return citation(target, textual=role == "cite:t")
        if role == "doc":
            return document_link(target, here)
        if role in PYTHON_ROLES or role.startswith("py:") and role[3:] in PYTHON_ROLES:
            return api_link(role.removeprefix("py:"), target)
        if role == "math":
            return f"${target}$"
        raise ValueError(f"{here}: no plain-Markdown form for the role {{{role}}}; add one in {Path(__file__).name}")

    return PAGE_LINK.sub(lambda match: page_link(match, here), ROLE.sub(replace, text))


def _admonition(name: str, argument: str, options: dict, body: str) -> str:
    title = argument if name == "admonition" else ADMONITIONS[name]
    if name != "admonition" and argument:
        body = f"{argument}\n{body}"
    if "dropdown" in options.get("class", "").split():
        return f"<details>\n<summary>{title}</summary>\n\n{body.strip()}\n\n</details>"
    quoted = "\n".join(f"> {line}" if line.strip() else ">" for line in body.strip().splitlines())
    return f"> **{title}**\n>\n{quoted}"


def convert_markdown(text: str, here: str) -> str:
    """A Markdown cell as plain Markdown: directives replaced, roles converted (outside code)."""
    lines, out, prose = text.splitlines(), [], []

    def flush():
        if prose:
            out.append(convert_roles("\n".join(prose), here))
            prose.clear()

    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            if re.match(r"^\([^)\s]+\)=\s*$|^%", lines[index]):  # a target or a comment: nothing to show
                index += 1
                continue
            prose.append(lines[index])
            index += 1
            continue
        flush()
        fence = opening["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((i for i in range(index + 1, len(lines)) if closing.match(lines[i])), len(lines))
        body = lines[index + 1:end]
        if opening["directive"] is None:  # plain code: kept as it is
            if fence[0] == ":":
                raise ValueError(f"{here}: a ':::' fence without a directive")
            out.append("\n".join(lines[index:end + 1]))
        else:
            options = {}
            while body and re.match(r"^:[\w-]+:", body[0]):
                key, _, value = body.pop(0)[1:].partition(":")
                options[key] = value.strip()
            name = opening["directive"]
            if name in ADMONITIONS:
                out.append(_admonition(name, opening["rest"], options, convert_markdown("\n".join(body), here)))
            elif name == "math":
                out.append("$$\n" + "\n".join(body).strip() + "\n$$")
            else:
                raise ValueError(f"{here}: no plain-Markdown form for the directive {{{name}}}; "
                                 f"add one in {Path(__file__).name}")
        index = end + 1
    flush()
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def notice(chapter: Path) -> str:
    """The line a copy opens with: where the chapter reads with its figures, and how to run it."""
    return (f"*This is the Colab copy of [{_title(f'book/{chapter.stem}')}]({_page(f'book/{chapter.stem}')}), "
            f"the chapter of the book with its figures. It opens without outputs: "
            f"**Runtime → Run all** makes them.*")


def colab_copy(chapter: Path) -> dict:
    """The notebook Colab opens for ``chapter``."""
    notebook = json.loads(chapter.read_text())
    here = f"book/{chapter.stem}"
    cells = [{"cell_type": "markdown", "id": "colab-copy", "metadata": {}, "source": [notice(chapter)]}]
    for cell in notebook["cells"]:
        cell = dict(cell)
        if cell["cell_type"] == "markdown":
            cell["source"] = convert_markdown("".join(cell["source"]), here).splitlines(keepends=True)
        elif cell["cell_type"] == "code":  # no outputs, and no trace of the run that made them
            cell["outputs"], cell["execution_count"] = [], None
            cell["metadata"] = {key: value for key, value in cell["metadata"].items() if key != "execution"}
        cells.append(cell)
    metadata = {key: value for key, value in notebook["metadata"].items() if key != "widgets"}
    return {**notebook, "cells": cells, "metadata": metadata}


def dumps(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def copy_path(chapter: Path) -> Path:
    return COPIES / chapter.name


def write(chapter: Path) -> bool:
    """Write the copy of ``chapter``; return whether it changed."""
    text, path = dumps(colab_copy(chapter)), copy_path(chapter)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return True


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    for chapter in [Path(name).resolve() for name in sys.argv[1:]] or CHAPTERS:
        print(f"{copy_path(chapter).relative_to(ROOT)}: {'written' if write(chapter) else 'up to date'}")
