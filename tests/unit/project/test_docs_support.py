"""tests/support/docs.py: which code blocks a section holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docs import shell_blocks

DOC = """# Title

## First

```sh
# a comment, not a heading
echo one
```

### A subsection

```yaml
kind: Pod
```

```sh
echo two
```

## Second

```sh
echo three
```

## Third

```yaml
x: 1
```
"""


def test_a_section_holds_its_sh_blocks_and_its_subsections_up_to_the_next_heading_of_its_level(
    tmp_path: Path,
) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    assert shell_blocks(doc, "## First") == ["# a comment, not a heading\necho one\n", "echo two\n"]
    assert shell_blocks(doc, "## Second") == ["echo three\n"]


def test_a_missing_heading_or_a_section_without_sh_blocks_is_an_error(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    with pytest.raises(AssertionError, match="no heading '## Fourth'"):
        shell_blocks(doc, "## Fourth")
    with pytest.raises(AssertionError, match="no sh code block"):
        shell_blocks(doc, "## Third")
