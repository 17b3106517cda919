"""The README and docs/ as readers use them: YAML blocks parse (they are pasted into kubectl), scripts run as typed."""

from __future__ import annotations

import os
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


def test_scripts_the_docs_run_directly_are_executable() -> None:
    """`hack/cluster.sh status` in the docs works as typed: every hack/ script they run without `bash` in front."""
    called = {
        match.group(1)
        for doc in DOCS
        for match in re.finditer(r"(?<![\w/.-])(?<!bash )(hack/[\w.-]+\.sh)\b", doc.read_text())
    }
    assert "hack/cluster.sh" in called
    assert [script for script in sorted(called) if not os.access(ROOT / script, os.X_OK)] == []
