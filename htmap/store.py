"""Files on disk that may live on AFS, NFS or EOS.

Rules (see DESIGN.md): publish every file by write-to-temp then rename in the same
directory, never lock, directories 0700 and files 0600 (maps hold pickles).
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Union

from . import runner

DIR_MODE = 0o700
FILE_MODE = 0o600
NO_ROOM_ERRNOS = runner.NO_ROOM_ERRNOS  # a full disk, a quota, a file size limit

PathLike = Union[str, "os.PathLike[str]"]


def make_dir(path: PathLike) -> Path:
    """Create a private directory (and private parents below an existing one)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)  # explicitly: an odd umask (0o277) must not change it
    return path


def temp_name(path: Path) -> Path:
    """A sibling name no other writer will pick (host-independent random part)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a torn one."""
    path = Path(path)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_text_atomic(path: PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def create_exclusive(path: PathLike, data: bytes) -> bool:
    """Publish ``path`` only if it does not exist yet; False if someone else did first.

    Written to a temp file first and linked into place by ``os.rename`` onto a name
    checked with O_EXCL, so the content is never seen half written.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    write_bytes_atomic(path, data)
    return True


def open_private(path: PathLike, mode: str = "wb"):
    """Open a new file with 0600 permissions (for streams written before publishing)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if "a" in mode:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    return os.fdopen(os.open(path, flags, FILE_MODE), mode)


def remove_tree(path: PathLike) -> None:
    """Delete a directory: rename it away first so it vanishes at once for readers."""
    path = Path(path)
    if not path.exists():
        return
    doomed = path.with_name(f".{path.name}.removing-{secrets.token_hex(4)}")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def dir_size(path: PathLike) -> int:
    """Bytes used by the files below ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total
