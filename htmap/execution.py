"""Helpers a mapped function calls while it runs as a component (no-ops elsewhere).

They use only the standard library: they run on execute nodes.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]
TRANSFER_DIR = "_htmap_transfer"
CHECKPOINT_DIR = "_htmap_checkpoint"


def _runner() -> Any:
    """htmap's runner; on a node where this file stands in for htmap (see
    ``runner.provide_htmap_helpers``) that is the running script itself."""
    try:
        from . import runner
    except ImportError:
        import __main__ as runner
    return runner


def _make_private_dirs(path: str) -> None:
    _runner().make_private_dirs(path)


def _make_private(path: str) -> None:
    _runner().make_private(path)


def on_execute() -> bool:
    return os.environ.get("HTMAP_ON_EXECUTE") == "1"


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dest)


def _relative(path: Path) -> Path:
    """Where a file goes under the transfer/checkpoint directory: keep relative paths."""
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd())
        except ValueError:
            return Path(path.name)
    return Path(*[p for p in path.parts if p not in ("..", ".")])


def transfer_output_files(*paths: PathLike) -> None:
    """Send files back with the component's output; call it from the mapped function.

    On the submit side, they appear under ``m.output_files[component]``, with the same relative
    paths. Outside a component this does nothing.

    Parameters
    ----------
    *paths : str or os.PathLike
        The files or directories to send back, relative to the working directory or absolute.
    """
    if not on_execute():
        return
    target = Path(os.environ.get("HTMAP_TRANSFER_DIR") or TRANSFER_DIR)
    for p in paths:
        src = Path(p)
        _copy(src, target / _relative(src))


def checkpoint(*paths: PathLike) -> None:
    """Save files as the component's checkpoint; call it from the mapped function.

    If the component is stopped (evicted, vacated, held and released) and starts again, the files
    of its last checkpoint are back in its working directory, so the function can resume from
    them. Each call replaces the previous checkpoint as a whole. Outside a component this does
    nothing.

    Parameters
    ----------
    *paths : str or os.PathLike
        The files or directories to save, relative to the working directory or absolute.
    """
    if not on_execute():
        return
    target = Path(os.environ.get("HTMAP_CHECKPOINT_DIR") or CHECKPOINT_DIR).absolute()
    staging = target.with_name(target.name + ".new")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    _make_private_dirs(str(staging))
    for p in paths:
        src = Path(p)
        _copy(src, staging / _relative(src))
    _make_private(str(staging))  # it may be inside the map (local engine): 0700/0600 whatever the umask
    # publish by rename: a crash leaves either the old or the new checkpoint, never half of one
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
