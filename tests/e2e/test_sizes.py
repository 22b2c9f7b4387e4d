"""Size budgets of what a shop's page loads: ``embed.js`` on every page view, the widget
(its script, its style sheet and the shared modules it imports) when a visitor opens it.
Sizes are of the files as served (uncompressed); 1 KB = 1024 bytes."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import REPO

STATIC = REPO / "static"
EMBED_BUDGET = 5 * 1024
# 40 KB until the widget got the visitor's context, blocks, the "New messages" pill, sound,
# drag and drop, dead-connection checks, and the emoji picker and lightbox: those two load on
# first use only (about 7.5 KB, counted here all the same, as the graph follows import()).
WIDGET_BUDGET = 54 * 1024
IMPORT = re.compile(r"""(?:\bimport|\bexport\b[^;'"]*?\bfrom|\bfrom)\s*['"]([^'"]+)['"]"""
                    r"""|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)""")


def module_file(specifier: str, importer: Path) -> Path:
    """The file an import specifier names: "/static/…" from the site root, "./…" relative."""
    if specifier.startswith("/static/"):
        return STATIC / specifier[len("/static/"):]
    assert specifier.startswith(("./", "../")), f"{importer.name} imports {specifier!r}"
    return (importer.parent / specifier).resolve()


def module_graph(entry: Path) -> set[Path]:
    """``entry`` and every module it imports, directly or not."""
    seen: set[Path] = set()
    todo = [entry.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        assert path.is_file(), f"missing module {path.relative_to(REPO)}"
        seen.add(path)
        for match in IMPORT.finditer(path.read_text(encoding="utf-8")):
            todo.append(module_file(match.group(1) or match.group(2), path))
    return seen


def test_embed_js_is_at_most_5_kb():
    size = (STATIC / "embed.js").stat().st_size
    assert size <= EMBED_BUDGET, f"embed.js is {size} bytes, the budget is {EMBED_BUDGET}"


def test_widget_js_and_css_are_at_most_40_kb():
    modules = module_graph(STATIC / "widget" / "widget.js")
    # The widget's own page pulls in shared code only: nothing of the console.
    assert all(STATIC / "console" not in path.parents for path in modules), modules
    files = modules | {STATIC / "widget" / "widget.css"}
    sizes = {str(path.relative_to(STATIC)): path.stat().st_size for path in files}
    assert "shared/chat-client.js" in sizes and "shared/render.js" in sizes, sizes
    total = sum(sizes.values())
    assert total <= WIDGET_BUDGET, f"the widget is {total} bytes ({sizes}), the budget is " \
                                   f"{WIDGET_BUDGET}"


def test_the_widget_page_loads_exactly_the_measured_files():
    # What the widget's HTML links is what is measured above: widget.js and widget.css.
    html = (STATIC / "widget" / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", html)
    sheets = re.findall(r"<link\b[^>]*rel=\"stylesheet\"[^>]*href=\"([^\"]+)\"", html)
    assert scripts == ["/static/widget/widget.js"], scripts
    assert sheets == ["/static/widget/widget.css"], sheets
