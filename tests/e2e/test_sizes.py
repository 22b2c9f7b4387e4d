"""Size budgets of what a shop's page loads: ``embed.js`` on every page view; the widget
when a visitor opens it (its script, its style sheet and the shared modules it imports);
and, apart, what the widget imports on first use only (``import()``: the emoji picker, the
lightbox, the reception screens and the style sheet they add). Sizes are of the files as
served (uncompressed); 1 KB = 1024 bytes."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import REPO

STATIC = REPO / "static"
EMBED_BUDGET = 5 * 1024
# What opening the widget costs: 40 KB until the widget got the visitor's context, blocks,
# the "New messages" pill, sound, drag and drop, dead-connection checks, then availability
# (busy, away, greeting) and the automatic replies.
WIDGET_OPEN_BUDGET = 52 * 1024
# What it loads when first used: the emoji picker and the lightbox (about 7.5 KB), the away
# form, the rating and the transcript (reception.js and .css, about 18 KB).
WIDGET_LAZY_BUDGET = 28 * 1024
STATIC_IMPORT = re.compile(r"""(?:\bimport|\bexport\b[^;'"]*?\bfrom|\bfrom)\s*['"]([^'"]+)['"]""")
DYNAMIC_IMPORT = re.compile(r"""\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)""")
# A style sheet a module adds itself (link.href = "/static/….css")
STYLE_SHEET = re.compile(r"""['"](/static/[^'"]+\.css)['"]""")


def module_file(specifier: str, importer: Path) -> Path:
    """The file an import specifier names: "/static/…" from the site root, "./…" relative."""
    if specifier.startswith("/static/"):
        return STATIC / specifier[len("/static/"):]
    assert specifier.startswith(("./", "../")), f"{importer.name} imports {specifier!r}"
    return (importer.parent / specifier).resolve()


def module_graph(entry: Path) -> tuple[set[Path], set[Path]]:
    """``entry`` and every module it imports statically, directly or not; and the modules
    (with what they import, and the style sheets they add) that it imports only on first
    use, with ``import()``."""
    seen: set[Path] = set()
    lazy: set[Path] = set()
    todo = [entry.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        assert path.is_file(), f"missing module {path.relative_to(REPO)}"
        seen.add(path)
        text = path.read_text(encoding="utf-8")
        todo += [module_file(m, path) for m in STATIC_IMPORT.findall(text)]
        lazy |= {module_file(m, path) for m in DYNAMIC_IMPORT.findall(text)}
    on_first_use: set[Path] = set()
    for start in lazy - seen:
        later, more = module_graph(start)
        on_first_use |= later | more
    on_first_use -= seen
    for path in list(on_first_use):
        text = path.read_text(encoding="utf-8")
        on_first_use |= {module_file(m, path) for m in STYLE_SHEET.findall(text)}
    return seen, on_first_use


def sizes(files: set[Path]) -> dict[str, int]:
    return {str(path.relative_to(STATIC)): path.stat().st_size for path in files}


def test_embed_js_is_at_most_5_kb():
    size = (STATIC / "embed.js").stat().st_size
    assert size <= EMBED_BUDGET, f"embed.js is {size} bytes, the budget is {EMBED_BUDGET}"


def test_what_opening_the_widget_loads_is_at_most_52_kb():
    modules, _ = module_graph(STATIC / "widget" / "widget.js")
    # The widget's own page pulls in shared code only: nothing of the console.
    assert all(STATIC / "console" not in path.parents for path in modules), modules
    loaded = sizes(modules | {STATIC / "widget" / "widget.css"})
    assert "shared/chat-client.js" in loaded and "shared/render.js" in loaded, loaded
    # What is used only sometimes is not loaded with the widget.
    for later in ("shared/emoji.js", "shared/lightbox.js", "widget/reception.js"):
        assert later not in loaded, f"{later} is loaded when the widget opens"
    total = sum(loaded.values())
    assert total <= WIDGET_OPEN_BUDGET, f"opening the widget loads {total} bytes ({loaded}), " \
                                        f"the budget is {WIDGET_OPEN_BUDGET}"


def test_what_the_widget_loads_on_first_use_is_at_most_28_kb():
    _, later = module_graph(STATIC / "widget" / "widget.js")
    loaded = sizes(later)
    assert {"shared/emoji.js", "shared/lightbox.js", "widget/reception.js",
            "widget/reception.css"} <= set(loaded), loaded
    assert all(STATIC / "console" not in path.parents for path in later), later
    total = sum(loaded.values())
    assert total <= WIDGET_LAZY_BUDGET, f"the widget loads {total} bytes on first use " \
                                        f"({loaded}), the budget is {WIDGET_LAZY_BUDGET}"


def test_the_widget_page_loads_exactly_the_measured_files():
    # What the widget's HTML links is what is measured above: widget.js and widget.css.
    html = (STATIC / "widget" / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", html)
    sheets = re.findall(r"<link\b[^>]*rel=\"stylesheet\"[^>]*href=\"([^\"]+)\"", html)
    assert scripts == ["/static/widget/widget.js"], scripts
    assert sheets == ["/static/widget/widget.css"], sheets
