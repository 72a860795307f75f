"""Sphinx extension: drop repeated ``<script>`` tags from every page.

sphinx-thebe registers its configuration script each time Sphinx reads sources, so a
full rebuild can put ``const THEBE_JS_URL = ...`` on a page twice — a SyntaxError in
the reader's browser console. Keeping the first of identical scripts fixes that.
"""


def _unique_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # inline scripts have filename None or "" depending on who added them
        key = (getattr(script, "filename", script) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _unique_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
