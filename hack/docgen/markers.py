"""Splicing a generated block between marker comments, so the rest of a page stays hand-written."""

from __future__ import annotations


def begin(name: str) -> str:
    return f"<!-- BEGIN GENERATED {name}: edit the source and run `make docs`, not this block -->"


def end(name: str) -> str:
    return f"<!-- END GENERATED {name} -->"


def splice(page: str, name: str, block: str) -> str:
    """`page` with the text between the `name` markers replaced by `block`."""
    head, found, rest = page.partition(begin(name))
    _, found_end, tail = rest.partition(end(name))
    if not found or not found_end:
        raise ValueError(f"the page has no {begin(name)!r} ... {end(name)!r} markers")
    return f"{head}{begin(name)}\n{block.rstrip()}\n{end(name)}{tail}"


def cell(text: str) -> str:
    """Text fit for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")
