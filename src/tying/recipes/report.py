"""Side-by-side reports of finished runs, built from their ``metrics.json`` records alone, so a
report is the same every time for the same stored records. Columns come from the runs' tasks:
each reported metric (:class:`tying.training.Metric`) gets its best-validation and test value,
the paper's test value and the gap; where a recipe's paper tests the model after the last epoch
(``paper.tested = "last"``), a column gives that model's test value and the gap is taken from it;
every row shows parameters, unique parameters, epochs, throughput and wall time. Several seeds
of one recipe make one row of mean ± standard deviation, with the per-seed values in a second
table.

Files, under the output folder, for report ``<report>``:

* ``<report>.md``: the tables, the plots and, per run, the command and the machine;
* ``<report>.csv``: one row per run and epoch;
* ``<report>-valid-<metric>.png``: the validation metric per epoch (a bar per run when no run
  has more than one epoch; the task's ``curve`` metric, else the first reported one), and
  ``<report>-test-vs-params.png`` (the first reported metric);
* ``<report>-<name>.png``: the figures the runs' tasks add (:meth:`tying.training.Task.report_figures`).

When a run shares layers (its record's ``layer_sharing``), the table gains a ``layer sets`` column.

:func:`update_results_doc` pastes the same section between markers into a document such as
``docs/RESULTS.md``.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from tying._io import atomic_write_text
from tying._text import plural
from tying.recipes.cells import duration, epochs, memory, shortened, spread
from tying.recipes.config import find_task
from tying.recipes.plots import Point, curve_plot, figure_file, scatter_plot, task_figures
from tying.recipes.run import Run, current_command, read_metrics
from tying.recipes.terminal import name_table
from tying.training.task import Metric

__all__ = ["Row", "report_rows", "columns", "rich_table", "markdown", "unfinished", "write_report", "update_results_doc", "THROUGHPUT_NOTE"]

THROUGHPUT_NOTE = (
    "Throughput is one run's training speed on the machine its run names, which may have been shared with other "
    "work: it is not a speed comparison between variants (benchmarks/bench_trainer.py measures speed)."
)


@dataclass
class Row:
    """The finished runs of one recipe (one per seed) as one report row."""

    group: str
    records: list[dict[str, Any]]

    @property
    def first(self) -> dict[str, Any]:
        return self.records[0]

    @property
    def label(self) -> str:
        return self.group if len(self.records) == 1 else f"{self.group} ({len(self.records)} seeds)"


def _metrics(rows: Sequence[Row]) -> list[Metric]:
    """The reported metrics of the rows' tasks, in order of first appearance."""
    seen: dict[str, Metric] = {}
    for row in rows:
        for m in find_task(row.first["task"]).metrics:
            if m.report:
                seen.setdefault(m.name, m)
    return list(seen.values())


def _curve(rows: Sequence[Row], metrics: list[Metric]) -> Metric:
    """The metric plotted per epoch: the first a task marks ``curve``, else the first reported."""
    marked = [m for row in rows for m in find_task(row.first["task"]).metrics if m.curve]
    return marked[0] if marked else metrics[0]


def _units(rows: Sequence[Row]) -> set[str]:
    return {row.first["unit"] for row in rows}


def _shares_layers(rows: Sequence[Row]) -> bool:
    """Whether some run shares layers (:func:`tying.layer_sharing`): then a column shows each run's sets."""
    return any(x.get("layer_sharing") for row in rows for x in row.records)


def _layer_sets(record: dict[str, Any]) -> str:
    """The set of each layer (``A B C C B A``), per shared layer list, or ``unshared``."""
    shared = record.get("layer_sharing") or []
    if not shared:
        return "unshared"
    return "; ".join(
        (f"{s['path']}: " if len(shared) > 1 else "") + s["sets"] + ("" if s["share_norms"] else " (norms per layer)") for s in shared
    )


def _tested(row: Row) -> str:
    """Which model the row's paper tests: ``"best"`` (best validation) or ``"last"`` (after the final epoch)."""
    return str(row.first["recipe"]["paper"].get("tested", "best"))


def _shows_last(rows: Sequence[Row]) -> bool:
    """Whether some row's paper tests the last epoch's model: then a column gives ours."""
    return any(_tested(row) == "last" for row in rows)


def _values(row: Row, split: str, metric: Metric) -> list[float]:
    """``metric`` of every seed's ``split`` (``"valid"``, ``"test"``, ``"test_last"``); empty unless
    every seed has it (records written before tying recorded ``test_last`` lack it)."""
    values = [(x.get(split) or {}).get(metric.name) for x in row.records]
    return [] if None in values else [float(v) for v in values if v is not None]


def _compared(row: Row, metric: Metric) -> list[float]:
    """The test values set against the paper's: of the model the paper tests."""
    return _values(row, "test_last" if _tested(row) == "last" else "test", metric)


def _has_paper(rows: Sequence[Row], metric: Metric) -> bool:
    """Whether some row's recipe gives the paper's test value of ``metric`` (else no paper and gap columns)."""
    return any(f"test_{metric.name}" in row.first["recipe"]["paper"] for row in rows)


def columns(rows: Sequence[Row]) -> list[str]:
    """Column headings of :func:`report_rows`."""
    heads = ["run", "parameters", "unique parameters", *(["layer sets"] if _shares_layers(rows) else []), "epochs"]
    for m in _metrics(rows):
        heads += [f"best valid {m.label}", f"test {m.label}", *([f"last-epoch test {m.label}"] if _shows_last(rows) else [])]
        heads += [f"paper test {m.label}", "gap"] if _has_paper(rows, m) else []
    units = _units(rows)
    return [*heads, f"{units.pop()}/s" if len(units) == 1 else "throughput", *(["peak memory"] if _has_memory(rows) else []), "wall time"]


def _has_memory(rows: Sequence[Row]) -> bool:
    """Whether every run recorded its peak memory (records before 2026-12-07 did not)."""
    return all(memory(row.records) is not None for row in rows)


def report_rows(rows: Sequence[Row]) -> list[list[str]]:
    """One list of formatted cells (:func:`columns`) per row."""
    metrics, units = _metrics(rows), _units(rows)
    out = []
    for row in rows:
        r, paper = row.first, row.first["recipe"]["paper"]
        cells = [row.label, f"{r['total_parameters']:,}"]
        cells.append(f"{r['unique_parameters']:,}" + (f" (paper {paper['parameters']})" if "parameters" in paper else ""))
        if _shares_layers(rows):
            cells.append(_layer_sets(r))
        cells.append(epochs(r))
        for m in metrics:
            valid, test, last, compared = (_values(row, "valid", m), _values(row, "test", m), _values(row, "test_last", m), _compared(row, m))
            ref = paper.get(f"test_{m.name}")
            if ref is None or not compared:
                gap = "-"
            elif shortened(r):
                gap = "n/a (shortened)"
            else:
                gap = f"{statistics.mean(compared) - ref:+.1f}"
            cells += [spread(valid, m) if valid else "-", spread(test, m) if test else "-"]
            if _shows_last(rows):
                cells.append(spread(last, m) if last else "-")
            cells += ["-" if ref is None else f"{ref:g}", gap] if _has_paper(rows, m) else []
        speed = statistics.mean(x[f"{x['unit']}_per_s"] for x in row.records)
        cells.append(f"{speed:,.0f}" + ("" if len(units) == 1 else f" {r['unit']}/s"))
        cells += [memory(row.records) or "-"] if _has_memory(rows) else []
        cells.append(duration(statistics.mean(x["wall_s"] for x in row.records)))
        out.append(cells)
    return out


def _per_seed(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    """Heading and rows of the per-seed table (empty when every recipe ran once)."""
    metrics = _metrics(rows)
    splits = {"valid": "best valid", "test": "test", **({"test_last": "last-epoch test"} if _shows_last(rows) else {})}
    heads = ["run", "seed", *(f"{words} {m.label}" for m in metrics for words in splits.values())]
    body = []
    for row in rows:
        if len(row.records) > 1:
            for x in row.records:
                cells = [x["name"], str(x["recipe"]["train"]["seed"])]
                for m in metrics:
                    cells += [m.format((x.get(split) or {}).get(m.name)) for split in splits]
                body.append(cells)
    return heads, body


def rich_table(rows: Sequence[Row], title: str | None = None) -> list[Table]:
    """The report's table(s) for the terminal: the comparison, and the per-seed values if any."""
    table = name_table(columns(rows), report_rows(rows), title)
    heads, body = _per_seed(rows)
    return [table, name_table(heads, body, "per seed")] if body else [table]


def _against_paper(rows: Sequence[Row], metric: Metric) -> str:
    """How the full-schedule rows' test values (means over seeds) compare with the papers': each
    gap against its recipe's ``paper.tolerance``, and whether the rows rank as the papers' do."""
    ours: dict[str, float] = {}
    refs: dict[str, float] = {}
    tolerance: dict[str, float] = {}
    for row in rows:
        paper = row.first["recipe"]["paper"]
        test = _compared(row, metric)
        if f"test_{metric.name}" not in paper or not test or shortened(row.first):
            continue
        ours[row.group], refs[row.group] = statistics.mean(test), paper[f"test_{metric.name}"]
        if "tolerance" in paper:
            tolerance[row.group] = paper["tolerance"]
    sentences = []
    if tolerance:
        verdict: dict[bool, list[str]] = {True: [], False: []}
        for name, tol in tolerance.items():
            verdict[abs(ours[name] - refs[name]) <= tol].append(f"{name} ({ours[name] - refs[name]:+.1f}, tolerance ±{tol:g})")
        sentences.append(
            f"Against the paper's test {metric.words}: within tolerance {', '.join(verdict[True]) or 'none'}; "
            f"outside {', '.join(verdict[False]) or 'none'}."
        )
    if len(ours) > 1:
        sign = " < " if metric.direction == "lower" else " > "

        def ranked(values: dict[str, float]) -> list[str]:
            return sorted(values, key=lambda name: values[name], reverse=metric.direction == "higher")

        same = ranked(ours) == ranked(refs)
        sentences.append(
            f"Ranked by test {metric.words}, best first: ours {sign.join(ranked(ours))}; the paper's {sign.join(ranked(refs))} "
            f"({'the same order' if same else 'a different order'})."
        )
    return " ".join(sentences)


def _md_table(heads: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1), *("| " + " | ".join(c) + " |" for c in body)]


def markdown(rows: Sequence[Row], title: str, image_prefix: str, missing: Sequence[str] = ()) -> str:
    """The report as markdown; ``image_prefix``: the path from the markdown file to the plots,
    ending in ``<report>-``; ``missing``: the runs of the comparison not finished yet (named
    under the title, so a partial report says it is one)."""
    metrics = _metrics(rows)
    lines = [f"### {title}", ""]
    if missing:
        lines += [f"Partial: {plural(len(missing), 'run')} not finished yet and not in the tables: {', '.join(missing)}.", ""]
    lines += [*_md_table(columns(rows), report_rows(rows)), ""]
    heads, body = _per_seed(rows)
    if body:
        lines += ["Per seed (the table above gives mean ± sample standard deviation over them):", "", *_md_table(heads, body), ""]
    first = metrics[0].words if metrics else "metric"
    # The per-epoch curve is the metric that picks the epoch (the first reported one unless a task marks another).
    picks = _curve(rows, metrics).words if metrics else first
    notes = f"Test {first} is that of the epoch with the best validation {picks}" + ("; gap = ours - paper." if any(_has_paper(rows, m) for m in metrics) else ".")
    if _shows_last(rows):
        last = [row.group for row in rows if _tested(row) == "last"]
        notes += (
            f" Last-epoch test {first} is that of the model after the final epoch, which is what the paper tests for "
            f"{', '.join(last)}: their gap and the comparisons below use it."
        )
    if any(shortened(x) for row in rows for x in row.records):
        notes += (
            " A run trained for fewer epochs than its recipe's schedule is marked \"(shortened)\": its gap to the "
            "paper's full-schedule number is not a like-for-like comparison, so it is not given."
        )
    lines += [notes, *filter(None, (_against_paper(rows, m) for m in metrics)), THROUGHPUT_NOTE, ""]
    lines += [f"![validation {m.words} per epoch]({image_prefix}valid-{m.name}.png)" for m in [_curve(rows, metrics)] if metrics]
    lines += [f"![test {first} against unique parameters]({image_prefix}test-vs-params.png)"]
    lines += [f"![{f.alt}]({image_prefix}{f.name}.png)" for f in task_figures([x for row in rows for x in row.records])]
    lines += [""]
    lines += ["Runs (each reproduced by its command; `tying compare` resumes and skips finished runs):", ""]
    for row in rows:
        for r in row.records:
            sources = {r["recipe"]["paper"].get("source")} - {None}
            lines.append(
                f"- **{r['name']}**: {r['recipe']['description']}. `{current_command(r['command'])}` — {epochs(r, words=True)}, "
                f"{duration(r['wall_s'])} training+validation, finished {r['finished']} on {r['machine']}"
                + (f"; code: {r['code']}" if "code" in r else "")
                + (f". Paper: {', '.join(sorted(sources))}." if sources else ".")
            )
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[Row]) -> str:
    records = [x for row in rows for x in row.records]
    keys = [k for x in records for m in x["history"] for k in m]
    fields = ["run", *dict.fromkeys(keys)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fields, lineterminator="\n", restval="")
    writer.writeheader()
    for x in records:
        for m in x["history"]:
            writer.writerow({"run": x["name"], **m})
    return buffer.getvalue()


def _plots(rows: Sequence[Row], prefix: Path, title: str) -> list[Path]:
    """The report's figures (module docstring) as ``<prefix>-*.png``."""
    metrics = _metrics(rows)
    if not metrics:
        return []
    title = textwrap.fill(title, 64)  # a 6.4-inch figure's title line holds about 64 characters
    m = _curve(rows, metrics)
    records = [x for row in rows for x in row.records]
    written = [curve_plot(Path(f"{prefix}-valid-{m.name}.png"), title, m, records)]
    m, points = metrics[0], []
    for row in rows:
        values = _compared(row, m) or _values(row, "test", m)  # the model the gap uses, else the best epoch's
        if values:
            ref = row.first["recipe"]["paper"].get(f"test_{m.name}")
            paper = None if ref is None or shortened(row.first) else ref
            points.append(Point(row.label, row.first["unique_parameters"] / 1e6, values, paper))
    seeds = any(len(row.records) > 1 for row in rows)
    written.append(scatter_plot(Path(f"{prefix}-test-vs-params.png"), title, m, points, seeds=seeds))
    written += [figure_file(Path(f"{prefix}-{extra.name}.png"), extra.draw) for extra in task_figures([x for row in rows for x in row.records])]
    return written


def unfinished(runs: Sequence[Run], out: str | os.PathLike[str]) -> list[str]:
    """The names of the runs among ``runs`` with no finished record in ``out/<run name>``."""
    return [run.name for run in runs if read_metrics(Path(out) / run.name) is None]


def collect(runs: Sequence[Run], out: str | os.PathLike[str]) -> list[Row]:
    """The finished runs among ``runs`` (in their order), grouped into rows by recipe."""
    rows: dict[str, Row] = {}
    for run in runs:
        record = read_metrics(Path(out) / run.name)
        if record is not None:
            rows.setdefault(run.group, Row(run.group, [])).records.append(record)
    return list(rows.values())


def write_report(runs: Sequence[Run], out: str | os.PathLike[str], title: str, report: str = "summary") -> tuple[list[Row], list[Path]]:
    """Write ``<report>.md``, ``<report>.csv`` and the plots for the finished runs among ``runs``
    into ``out``; returns the rows and the files written."""
    out = Path(out)
    rows = collect(runs, out)
    if not rows:
        raise FileNotFoundError(f"no finished run in {str(out)!r} (no <run>/metrics.json); train them first")
    written = _plots(rows, out / report, title)
    written.insert(0, atomic_write_text(out / f"{report}.csv", _csv(rows)))
    written.insert(0, atomic_write_text(out / f"{report}.md", markdown(rows, title, f"{report}-", unfinished(runs, out))))
    return rows, written


def update_results_doc(
    doc: str | os.PathLike[str],
    key: str,
    rows: Sequence[Row],
    out: str | os.PathLike[str],
    title: str,
    report: str = "summary",
    missing: Sequence[str] = (),
) -> Path:
    """Replace (or append) the section ``key`` of markdown file ``doc`` with the report whose
    plots :func:`write_report` wrote into ``out`` as ``report``, linked relative to ``doc``
    (``missing`` as for :func:`markdown`). The section sits between ``<!-- tying compare: KEY -->``
    and ``<!-- end tying compare: KEY -->``."""
    doc = Path(doc)
    begin, end = f"<!-- tying compare: {key} -->", f"<!-- end tying compare: {key} -->"
    prefix = Path(os.path.relpath(Path(out).resolve(), doc.resolve().parent)).as_posix() + f"/{report}-"
    block = f"{begin}\n{markdown(rows, title, prefix, missing)}{end}"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(doc, text)
