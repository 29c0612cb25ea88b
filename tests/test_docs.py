"""Every ```python block in the README and docs/ runs as written (blocks of one page share a
namespace, in order, as a reader would run them); the README's commands work from a fresh clone
(activation before a bare `tying`, real commands and options, `make demo` twice); its demo time
comes from the committed report; no page points outside the repository."""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=lambda p: p.name)
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = BLOCK.findall(page.read_text())
    if not blocks:
        pytest.skip(f"{page.name} has no python blocks")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)  # noqa: S102


# --------------------------------------------------------------------------- the README's commands

BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _tying_commands(page: Path) -> list[list[str]]:
    """The words of every `tying ...` command in the page's bash blocks (comments and a leading
    `echo ... |` dropped; `a; b` split)."""
    commands: list[list[str]] = [[]]
    for block in BASH.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)  # `#` comments, `;` `|` `&&` tokens
            lexer.whitespace_split = True
            for word in [*lexer, ";"]:
                if word in (";", "|", "&&", "||"):
                    commands.append([])
                else:
                    commands[-1].append(word)
    return [words for words in commands if words[:1] == ["tying"]]


def test_readme_activates_the_environment_before_its_first_bare_tying_command() -> None:
    """`make demo` installs into .venv without activating it: a bare `tying` works only after
    `source .venv/bin/activate`, which must come first in the README."""
    text = (ROOT / "README.md").read_text()
    first_bare = min(m.start() for m in re.finditer(r"^tying ", text, re.M))
    assert text.find("source .venv/bin/activate") in range(0, first_bare)
    assert "\n\t$(BIN)/tying demo" in (ROOT / "Makefile").read_text()  # make needs no activation


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "data.md"], ids=lambda p: p.name)
def test_tying_commands_in_the_docs_name_real_commands_and_options(page: Path) -> None:
    from typer.main import get_command

    from tying.cli.main import app

    root = get_command(app)
    commands = _tying_commands(page)
    assert commands
    for words in commands:
        command, rest = root, words[1:]
        while rest and rest[0] in getattr(command, "commands", {}):  # a group: its sub-command
            command, rest = command.commands[rest[0]], rest[1:]
        assert command is not root or set(rest) <= {"--version", "--help"}, f"{page.name}: no command {' '.join(words[:2])!r}"
        known = {opt for param in command.params for opt in param.opts}
        unknown = [w.split("=")[0] for w in rest if w.startswith("-") and w.split("=")[0] not in known | {"--help"}]
        assert not unknown, f"{page.name}: {' '.join(words[:3])} has no option {unknown}"


def test_make_demo_runs_twice_into_the_same_folder(tmp_path: Path) -> None:
    """The Makefile's demo command (with --quick, into a temporary folder) run twice: the second
    run trains nothing and reports the finished runs again, instead of refusing."""
    from typer.testing import CliRunner

    from tying.cli.main import app
    from tying.recipes import read_metrics

    recipe = re.search(r"^demo:.*\n\t\$\(BIN\)/tying (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None
    args = [*shlex.split(recipe.group(1)), "--quick", "--out", str(tmp_path / "demo")]
    runner = CliRunner()
    first = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    record = read_metrics(tmp_path / "demo" / "demo-tied")
    second = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert second.exit_code == 0, second.output
    assert "2 of 2 runs already finished" in second.output and "tied vs untied" in second.output
    assert read_metrics(tmp_path / "demo" / "demo-tied") == record


def test_readme_demo_time_is_the_committed_reports() -> None:
    """The README's statement of how long `make demo` takes is scripts/sync_readme.py's reading
    of docs/demo/, not a number typed by hand."""
    synced = runpy.run_path(str(ROOT / "scripts" / "sync_readme.py"))["synced"]
    readme = (ROOT / "README.md").read_text()
    assert synced(readme) == readme, "README.md's demo time is stale: run python scripts/sync_readme.py"


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()] + sorted((ROOT / "docs").rglob("*/*.md")), ids=lambda p: p.name)
def test_docs_stand_alone(page: Path) -> None:
    """No page points outside the repository, and every relative link resolves."""
    text = page.read_text()
    assert "../shared" not in text and "shared/notes" not in text
    broken = [t for t in LINK.findall(text) if "://" not in t and not (page.parent / t).exists()]
    assert not broken, broken
