"""Where data sets and caches live, shared by every task: the data root that named data sets
(``"ptb"``, ``"multi30k"``) are looked up in, the user cache folder, the split names, and the
errors of data that is missing or unreadable."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SPLITS", "DEFAULT_DATA_ROOT", "DataError", "DataNotFoundError", "resolve_corpus", "default_cache_dir"]

#: The splits of every data set, in order.
SPLITS = ("train", "valid", "test")

#: Where corpus names (``"ptb"``, ``"wikitext-2"``) are looked up unless ``--data-root`` or the
#: ``TYING_DATA_ROOT`` environment variable says otherwise (``docs/data.md`` gives each corpus's layout).
DEFAULT_DATA_ROOT = Path("~/tying-data").expanduser()


class DataError(ValueError):
    """Data files that cannot be read as a task needs them; the message names the file (and line)."""


class DataNotFoundError(FileNotFoundError):
    """A recipe's named data set is not where it is looked for; the message says where to put it."""


def resolve_corpus(name: str, data_root: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder of corpus ``name``: None for ``"builtin"``, ``name`` itself if it is a folder,
    else ``data_root / name`` (``data_root`` defaults to ``$TYING_DATA_ROOT`` or
    :data:`DEFAULT_DATA_ROOT`)."""
    if name == "builtin":
        return None
    if Path(name).is_dir():
        return Path(name)
    if Path(name).is_absolute() or "/" in name:
        raise DataNotFoundError(f"corpus folder {name!r} does not exist; it must hold train.txt, valid.txt and test.txt")
    root = Path(data_root or os.environ.get("TYING_DATA_ROOT") or DEFAULT_DATA_ROOT)
    folder = root / name
    if not folder.is_dir():
        raise DataNotFoundError(
            f"corpus {name!r} not found at {str(folder)!r}; pass --data-root (the folder holding {name}/) "
            "or set data.corpus to the corpus folder itself, or set TYING_DATA_ROOT"
        )
    return folder


def default_cache_dir() -> Path:
    """``$TYING_CACHE_DIR``, else ``$XDG_CACHE_HOME/tying``, else ``~/.cache/tying``."""
    if os.environ.get("TYING_CACHE_DIR"):
        return Path(os.environ["TYING_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tying"
