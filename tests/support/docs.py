"""The shell code blocks of a section of the project's Markdown docs, so tests run what the docs say."""

from __future__ import annotations

from pathlib import Path


def shell_blocks(path: Path, heading: str) -> list[str]:
    """The ```sh blocks under `heading` (a whole heading line such as `## Try it`), in order, up to the next heading
    of its level or above (lines inside code blocks are never headings)."""
    level = len(heading) - len(heading.lstrip("#"))
    blocks: list[str] = []
    inside = found = False
    fence = ""
    current: list[str] = []
    for line in path.read_text().splitlines():
        if fence:
            if line.startswith("```"):
                if fence == "sh" and inside:
                    blocks.append("\n".join(current) + "\n")
                fence, current = "", []
            else:
                current.append(line)
        elif line.startswith("```"):
            fence = line[3:].strip() or "text"
        elif line.startswith("#"):
            depth = len(line) - len(line.lstrip("#"))
            if line == heading:
                inside = found = True
            elif inside and depth <= level and line[depth : depth + 1] == " ":
                break
    if not found:
        raise AssertionError(f"{path.name} has no heading {heading!r}")
    if not blocks:
        raise AssertionError(f"{path.name}, {heading!r}: no sh code block")
    return blocks
