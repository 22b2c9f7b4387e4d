"""Text for the full-text index, queries against it, and snippets of what matched.

SQLite's ``unicode61`` tokenizer splits on spaces and punctuation, which
Chinese and Japanese text has few of: 我想退货 would be one word. So the
indexed text cuts every run of CJK characters into overlapping pairs (我想
想退 退货), and a query is cut the same way into a phrase of pairs: 退货
finds 我想退货, and so does 想退货. Other words match whole or by prefix.
"""

from __future__ import annotations

import re

# Han (with extension A and compatibility ideographs), kana and Hangul syllables.
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_WORD = re.compile(r"\w+")
SNIPPET_CHARACTERS = 80


def _pairs(run: str) -> str:
    if len(run) == 1:
        return run
    return " ".join(run[i:i + 2] for i in range(len(run) - 1))


def index_text(text: str) -> str:
    """``text`` as the index keeps it: CJK runs as pairs, set apart from other words."""
    return _CJK_RUN.sub(lambda match: f" {_pairs(match.group())} ", text)


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression for what a person typed: every part must match (CJK runs
    as phrases of pairs, a single CJK character or another word as a prefix). None when
    the query has nothing searchable."""
    terms = []
    for run in re.split(f"({_CJK_RUN.pattern})", query):
        if not run:
            continue
        if _CJK_RUN.fullmatch(run):
            terms.append(f'"{run}"*' if len(run) == 1 else f'"{_pairs(run)}"')
        else:
            terms += [f'"{word}"*' for word in _WORD.findall(run)]
    return " AND ".join(terms) or None


def needles(query: str) -> list[str]:
    """The parts of ``query`` to look for in a message's text, longest first."""
    parts = _CJK_RUN.findall(query) + _WORD.findall(_CJK_RUN.sub(" ", query))
    return sorted({part.lower() for part in parts}, key=len, reverse=True)


def snippet(text: str, query: str) -> list[dict]:
    """``[{"text", "match"}]``: up to about :data:`SNIPPET_CHARACTERS` of ``text`` around
    its first match of ``query``, the matching parts marked."""
    lowered = text.lower()
    found = [(lowered.find(part), part) for part in needles(query)]
    found = [(at, part) for at, part in found if at >= 0]
    first = min((at for at, _ in found), default=0)
    start = max(0, first - SNIPPET_CHARACTERS // 3)
    end = min(len(text), start + SNIPPET_CHARACTERS)
    window = text[start:end]
    spans = sorted(_spans(window.lower(), [part for _, part in found]))
    parts, at = [], 0
    for begin, finish in spans:
        if begin < at:
            continue
        if begin > at:
            parts.append({"text": window[at:begin], "match": False})
        parts.append({"text": window[begin:finish], "match": True})
        at = finish
    if at < len(window):
        parts.append({"text": window[at:], "match": False})
    if start > 0:
        parts.insert(0, {"text": "…", "match": False})
    if end < len(text):
        parts.append({"text": "…", "match": False})
    return parts


def _spans(window: str, parts: list[str]) -> list[tuple[int, int]]:
    spans = []
    for part in parts:
        at = window.find(part)
        while at >= 0:
            spans.append((at, at + len(part)))
            at = window.find(part, at + len(part))
    return spans
