"""``tying bench``: run the benchmark scripts of a checkout and write their output into a document.

The benchmarks are scripts in the repository's ``benchmarks/`` folder (not part of the installed
package): each prints its measurements as ratios taken in one run, the machine it ran on, and
PASS/FAIL lines for its goals, and exits non-zero when a goal FAILs (with ``--quick`` the goals
are printed NOT CHECKED: smoke-test sizes judge nothing). ``tying bench`` runs the chosen ones one
after the other (never in parallel: they time the machine), shows their output as it comes, and
with ``--doc`` writes every script's command and verbatim output into a markdown page such as
``docs/PERFORMANCE.md``. Naming some benchmarks refreshes their sections of an existing page and
keeps the others, so each section carries its own date and command line. It exits 1 when a script
failed to run or reported a FAIL line.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tying._io import atomic_write_text
from tying._text import plural
from tying.machine import describe_machine

__all__ = ["bench", "find_benchmarks"]


def find_benchmarks(folder: Path | None = None) -> dict[str, Path]:
    """Name (``fused_head`` for ``bench_fused_head.py``) -> script, from ``folder``, else
    ``./benchmarks``, else the ``benchmarks/`` folder of the checkout tying is installed from."""
    candidates = [folder] if folder is not None else [Path("benchmarks"), Path(__file__).resolve().parents[3] / "benchmarks"]
    for candidate in candidates:
        if candidate.is_dir():
            return {p.stem.removeprefix("bench_"): p for p in sorted(candidate.glob("bench_*.py"))}
    raise FileNotFoundError(
        f"no benchmarks folder at {', '.join(repr(str(c)) for c in candidates)}; the benchmarks ship with the "
        "source checkout: run from its root or pass --folder"
    )


def bench(
    names: Annotated[list[str] | None, typer.Argument(help="Benchmarks to run (default: all), e.g. fused_head tie_overhead.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes: a smoke test, not a measurement.")] = False,
    folder: Annotated[Path | None, typer.Option(help="Folder of bench_*.py scripts (default: the checkout's benchmarks/).")] = None,
    doc: Annotated[Path | None, typer.Option(help="Write the commands and outputs into this markdown file (e.g. docs/PERFORMANCE.md).")] = None,
) -> None:
    """Run the benchmark scripts (ratios measured in one run, PASS/FAIL goal lines)."""
    console = Console()
    try:
        scripts = find_benchmarks(folder)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    unknown = sorted(set(names or []) - set(scripts))
    if unknown:
        console.print(f"[red]error:[/red] no benchmark {unknown}; available: {', '.join(scripts)}", highlight=False)
        raise typer.Exit(1)
    sections, failed, missed = [], [], []
    for name in names or list(scripts):
        script = scripts[name]
        argv = [sys.executable, str(script), *(["--quick"] if quick else [])]
        shown = shlex.join(["python", f"benchmarks/{script.name}", *argv[2:]])
        console.rule(shown)
        start, load_before = time.perf_counter(), os.getloadavg()[0]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout or []:
            console.print(line, end="", highlight=False, markup=False)
            lines.append(line)
        code = proc.wait()
        if any(line.startswith("FAIL:") for line in lines):  # a goal missed, whatever the exit status
            missed.append(name)
        elif code != 0:
            failed.append(name)
        load = (load_before, os.getloadavg()[0])
        sections.append((name, shown, "".join(lines), time.perf_counter() - start, code, load))
    if doc is not None:
        kept = _sections(doc.read_text()) if doc.is_file() else {}
        kept.update((fields[0], _section(*fields, quick)) for fields in sections)
        order = [name for name in scripts if name in kept] + [name for name in kept if name not in scripts]
        atomic_write_text(doc, _document([kept[name] for name in order]))
        console.print(f"wrote {doc}", highlight=False)
    if missed:
        console.print(f"[red]{plural(len(missed), 'benchmark')} missed a goal (FAIL):[/red] {', '.join(missed)}", highlight=False)
    if failed:
        console.print(f"[red]{plural(len(failed), 'benchmark')} failed to run:[/red] {', '.join(failed)}", highlight=False)
    if missed or failed:
        raise typer.Exit(1)


def _section(name: str, command: str, output: str, seconds: float, code: int, load: tuple[float, float], quick: bool) -> str:
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    status = "" if code == 0 else f" (exited with status {code})"
    smoke = " (--quick: smoke-test sizes, not measurements)" if quick else ""
    where = f"load average {load[0]:.2f} before, {load[1]:.2f} after"
    return "\n".join([
        f"## {name}", "",
        f"`{threads}{command}` — {seconds:.0f} s{status}{smoke}; {time.strftime('%Y-%m-%d')}; {where}", "",
        "```text", output.rstrip("\n"), "```", "",
    ])


def _sections(text: str) -> dict[str, str]:
    """The ``## name`` sections of a page this command wrote, by name."""
    parts = re.split(r"^(?=## )", text, flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0].removeprefix("## ").strip(): part.rstrip("\n") + "\n" for part in parts}


def _document(sections: list[str]) -> str:
    lines = [
        "# Performance",
        "",
        "Generated by `OMP_NUM_THREADS=1 tying bench --doc docs/PERFORMANCE.md` (every benchmark; name some,",
        "e.g. `tying bench sharing --doc docs/PERFORMANCE.md`, to refresh only their sections).",
        "Each section is one script of `benchmarks/`, run one at a time; its command, date and verbatim",
        "output, which names the machine and ends with PASS/FAIL lines for the goals it checks (a FAIL",
        "makes the script exit 1, recorded as its exit status). Every ratio is computed from the figures",
        "printed beside it. The 1-minute load average before and after each script shows what else ran",
        "on the machine (the script itself adds up to its thread count).",
        "",
    ]
    return "\n".join(lines) + "\n" + "\n".join(sections)
