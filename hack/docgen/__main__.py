"""Write every generated reference page (`make docs`)."""

from __future__ import annotations

from pathlib import Path

from hack.docgen import PAGES

ROOT = Path(__file__).resolve().parents[2]

for page, render in PAGES:
    path = ROOT / page
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    new = render(old)
    if new != old:
        path.write_text(new, encoding="utf-8")
        print(f"docs: wrote {page}")
