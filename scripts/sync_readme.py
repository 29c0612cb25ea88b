"""Write the README's statement of how long ``make demo`` takes, from the committed demo report.

The sentence between ``<!-- demo-time -->`` and ``<!-- /demo-time -->`` in README.md is
generated from the runs in ``docs/demo/`` (their ``metrics.json``: the machine, each run's
training + validation time as the report shows it, and when each run started and finished), so
it never drifts from ``docs/demo/tying-demo.md``. ``tests/test_docs.py`` fails when it does.

    python scripts/sync_readme.py            # after regenerating docs/demo/ (see the README)
"""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

from tying.cli.demo import DEMO_RECIPES
from tying.recipes import read_metrics

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- demo-time -->\n).*?(\n<!-- /demo-time -->)", re.S)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def demo_time(demo: Path = ROOT / "docs" / "demo") -> str:
    """The README's sentence on the demo's duration, from the records of the runs in ``demo``."""
    records = []
    for name in DEMO_RECIPES:
        record = read_metrics(demo / name)
        if record is None:
            raise SystemExit(f"no finished run {name!r} in {str(demo)!r}: regenerate docs/demo first")
        records.append(record)
    # "finished" is local time on the machine of the runs (both runs: the same clock).
    ends = [datetime.strptime(r["finished"][:19], "%Y-%m-%d %H:%M:%S") for r in records]
    starts = [end - timedelta(seconds=r["session_s"]) for r, end in zip(records, ends, strict=True)]
    side_by_side = max(starts) < min(ends)
    # The processor and core count: the first two fields of a record's machine description.
    machine = " / ".join(dict.fromkeys(", ".join(r["machine"].split("; ")[:2]) for r in records))
    each = " and ".join(f"{_minutes(r['wall_s'])} (`{r['name']}`)" for r in records)
    how = "side by side, one per core" if side_by_side else "one after the other"
    return (
        f"On the machine of the committed report ({machine}) `make demo` took "
        f"{_minutes((max(ends) - min(starts)).total_seconds())} to train and test its two runs, {how}: {each} of training "
        "and validation ([`docs/demo/tying-demo.md`](docs/demo/tying-demo.md)). Starting the processes and writing the "
        "report add a few seconds, the install before it a few minutes."
    )


def synced(readme: str, demo: Path = ROOT / "docs" / "demo") -> str:
    """``readme`` with its demo-time block rewritten."""
    if not BLOCK.search(readme):
        raise SystemExit("README.md has no <!-- demo-time --> ... <!-- /demo-time --> block")
    return BLOCK.sub(lambda m: m.group(1) + demo_time(demo) + m.group(2), readme)


def main() -> None:
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    new = synced(text)
    if new != text:
        tmp = path.with_name(f".{path.name}.tmp")  # replaced whole: never a half-written README
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, path)
    print(("updated" if new != text else "unchanged:") + f" {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
