"""Crash-safe file writing shared by model and training-state checkpoints and result files."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from safetensors.torch import save_file


# Temporary folders are named ``.<file name>.tying-tmp-<8 hex digits>``, beside the file they write.
_MARK = ".tying-tmp-"
_RANDOM = re.compile(r"[0-9a-f]{8}")
# Without advisory locks (no ``fcntl``), a leftover is taken for a dead writer's after this long.
_STALE_AFTER_S = 24 * 3600


def _fcntl() -> ModuleType | None:
    """``fcntl`` where the platform has it (POSIX), else ``None`` (Windows): writes still work,
    without telling live writers' temporary folders from dead ones by their lock."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Create the file at ``path`` with ``write(temporary_path)`` so that a crash at any moment
    leaves either the previous file or the complete new one under that name, never a partial file.

    The data goes to a private temporary folder beside ``path`` (same file system, so the rename is
    atomic), ``.<name>.tying-tmp-<8 hex digits>``, which holds everything the write creates — also
    the temporary file that safetensors' ``save_file`` writes beside its target and renames. The
    file is fsynced, renamed over ``path`` with :func:`os.replace`, the folder is removed and the
    parent folder fsynced so the rename itself survives a power loss. A process killed mid-write
    (``kill -9``, a power loss) leaves its temporary folder behind: the next write to ``path``
    removes every such folder for ``path`` that no live writer holds (each writer holds an
    exclusive ``flock`` on its folder, which the kernel releases when the process dies), and
    nothing else. Where ``fcntl`` does not exist (Windows) there is no such lock: leftovers older
    than a day are removed instead, and the folder fsync (a POSIX notion) is skipped.

    The file gets the permissions of a file newly created in its folder (the umask's, as ``open``
    and ``torch.save`` give: 0644 under umask 022), whatever mode ``write`` left it with.
    """
    fcntl = _fcntl()
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {str(path)!r}: it is a folder; name a file in it, e.g. {str(path / 'model.safetensors')!r}")
    _remove_stale(folder, path.name)  # first: a disk filled by killed writes has room again
    tmp_folder = _make_temporary_folder(folder, path.name)
    lock = os.open(tmp_folder, os.O_RDONLY | os.O_DIRECTORY) if fcntl is not None else None
    try:
        # A cleaner that locked and removed the folder between mkdir and here makes this write
        # fail (FileNotFoundError below), never the file at ``path``.
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            tmp = tmp_folder / path.name
            # The mode a file created here gets (0644 under umask 022, or a default ACL's), as
            # ``torch.save``'s file would: safetensors renames its own private (0600) file into place.
            tmp.touch(exist_ok=False)
            mode = stat.S_IMODE(tmp.stat().st_mode)
            write(str(tmp))
            os.chmod(tmp, mode)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp_folder, ignore_errors=True)
    finally:
        if lock is not None:
            os.close(lock)
    if fcntl is not None:  # POSIX: make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _make_temporary_folder(folder: Path, name: str) -> Path:
    while True:
        tmp = folder / f".{name}{_MARK}{secrets.token_hex(4)}"
        try:
            tmp.mkdir(mode=0o700)
            return tmp
        except FileExistsError:
            continue


def _remove_stale(folder: Path, name: str) -> None:
    """Remove the temporary folders of writes to ``folder / name`` whose writer is gone: named as
    :func:`atomic_write` names them, a real folder (not a link), and not locked by a live writer
    (without ``fcntl``: not touched for a day)."""
    fcntl = _fcntl()
    prefix = f".{name}{_MARK}"
    for entry in os.scandir(folder):
        if not (entry.name.startswith(prefix) and _RANDOM.fullmatch(entry.name[len(prefix) :])):
            continue
        if fcntl is None:
            if entry.is_dir(follow_symlinks=False) and time.time() - entry.stat(follow_symlinks=False).st_mtime > _STALE_AFTER_S:
                shutil.rmtree(entry.path, ignore_errors=True)
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:  # a file or a link of that name, or already gone: not ours to remove
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live writer
            continue
        else:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(fd)


def atomic_save_file(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> Path:
    """Write ``tensors`` as a safetensors file at ``path``, crash-safe (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` at ``path``, crash-safe (:func:`atomic_write`)."""
    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    return atomic_write(path, write)
