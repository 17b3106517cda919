"""`python -m bench.report [RESULTS_JSON]`: the table of a results file (default: latest.json) in Markdown,
for docs/performance.md and the README."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import results


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else results.RESULTS / "latest.json"
    doc = json.loads(path.read_text())
    m = doc["machine"]
    print(
        f"Run {doc['timestamp']} ({doc['mode']}, `{doc['command']}`, {doc['duration_seconds']} s) on {m['summary']}, "
        f"load average {m['load_average_at_start'][0]} at start. Tools: "
        + "; ".join(f"{k}: {v}" for k, v in doc.get("tools", {}).items())
        + ".\n"
    )
    print(results.markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
