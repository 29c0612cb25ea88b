"""The descriptions stored with every result: the machine, and the code that produced it."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

import tying
from tying.machine import describe_code, describe_machine


def test_machine_names_cores_torch_threads_and_allocator() -> None:
    assert re.search(r"\d+ cores; Python 3\.\d+\.\d+; torch \S+ \(\d+ threads\); allocator: ", describe_machine())


def test_code_names_the_version_and_the_commit_with_uncommitted_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"rev-parse": "abc1234\n", "status": ""}

    def git(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert argv[:2] == ["git", "-C"] and kwargs["timeout"] > 0
        return subprocess.CompletedProcess(argv, 0, stdout=answers[argv[3]], stderr="")

    monkeypatch.setattr(subprocess, "run", git)
    assert describe_code() == f"tying {tying.__version__}, git abc1234"
    answers["status"] = " M core.py\n"
    assert describe_code() == f"tying {tying.__version__}, git abc1234 + uncommitted changes"


@pytest.mark.parametrize("error", [FileNotFoundError("git"), subprocess.CalledProcessError(128, "git")])
def test_code_without_git_or_outside_a_checkout_is_the_version(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(subprocess, "run", fail)
    assert describe_code() == f"tying {tying.__version__}"
