"""Sphinx extension: the library's version in the footer of every page.

The version is read from ``unet_course.__version__``, the one place it is written, so the
published book says which release of the library its chapters were built with.
"""

import html

import unet_course


def footer_line(version: str, repository_url: str = "", branch: str = "main") -> str:
    """The footer's HTML: ``unet-course X.Y.Z``, linked to the changelog when the repository is known."""
    text = f"unet-course {html.escape(version)}"
    if repository_url:
        changelog = f"{repository_url.rstrip('/')}/blob/{branch}/CHANGELOG.md"
        text = f'<a href="{html.escape(changelog)}">{text}</a>'
    return f'<p class="unet-course-version">{text}</p>'


def _add_version(app, config):
    config.version = config.release = unet_course.__version__
    options = config.html_theme_options
    line = footer_line(unet_course.__version__, options.get("repository_url", ""),
                       options.get("repository_branch") or "main")
    options["extra_footer"] = (options.get("extra_footer") or "") + line


def setup(app):
    app.connect("config-inited", _add_version)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
