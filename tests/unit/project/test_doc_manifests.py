"""Every YAML block in the README and docs/ parses: readers paste them into kubectl."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_YAML_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```$", re.MULTILINE | re.DOTALL)
BLOCKS = [
    pytest.param(block, id=f"{doc.name}-{n}")
    for doc in DOCS
    for n, block in enumerate(_YAML_BLOCK.findall(doc.read_text()), 1)
]


@pytest.mark.parametrize("block", BLOCKS)
def test_yaml_blocks_of_the_docs_parse(block: str) -> None:
    assert [d for d in yaml.safe_load_all(block) if d is not None]
