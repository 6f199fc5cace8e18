"""Reading and writing the files of a job set (function, inputs, outputs).

Inputs are one data file plus an offset index instead of a file per component: a
million-component map is two files, which AFS and NFS handle far better.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import cloudpickle

from . import exceptions, runner, store

INDEX_ENTRY = runner.INDEX_ENTRY
OK, ERR = runner.OK, runner.ERR


def layout(directory: Path) -> None:
    """Create the sub-directories every engine relies on."""
    for sub in ("inputs", "outputs", "logs", "engine"):
        store.make_dir(directory / sub)


def write_function(directory: Path, func: Callable) -> None:
    try:
        data = cloudpickle.dumps(func)
    except Exception as e:
        raise exceptions.CannotPickle(
            f"cloudpickle cannot pickle the function {func!r}: {e}. "
            "Map a function defined at module level, or make what it refers to picklable."
        ) from e
    with store.open_private(directory / "func") as f:
        f.write(data)
    sources = function_sources(func)
    if sources:
        store.write_text_atomic(directory / "func.source.json", json.dumps(sources))


def function_sources(func: Callable) -> Dict[str, Dict[str, Any]]:
    """Source lines of the mapped function and the same-module functions it calls, for error reports."""
    import inspect

    code = getattr(func, "__code__", None)
    if code is None:
        return {}
    candidates = [func]
    module_globals = getattr(func, "__globals__", {})
    for name in code.co_names:
        other = module_globals.get(name)
        if inspect.isfunction(other) and other.__module__ == func.__module__:
            candidates.append(other)
    out = {}
    for f in candidates:
        try:
            lines, first = inspect.getsourcelines(f)
        except (OSError, TypeError):
            continue
        out[f.__code__.co_name] = {"filename": f.__code__.co_filename, "first": first or 1, "lines": lines}
    return out


class InputWriter:
    """Appends components' (args, kwargs) to the input store, one at a time."""

    def __init__(self, inputs_dir: Path):
        self._data = store.open_private(inputs_dir / "data")
        self._index = store.open_private(inputs_dir / "index")
        self._offset = 0
        self.count = 0
        self._index.write(INDEX_ENTRY.pack(0))

    def add(self, args: Tuple, kwargs: Dict[str, Any]) -> None:
        try:
            blob = cloudpickle.dumps((tuple(args), dict(kwargs)))
        except Exception as e:
            raise exceptions.CannotPickle(
                f"cloudpickle cannot pickle the input of component {self.count} "
                f"(args={runner.short_repr(args)}, kwargs={runner.short_repr(kwargs)}): {e}"
            ) from e
        self._data.write(blob)
        self._offset += len(blob)
        self._index.write(INDEX_ENTRY.pack(self._offset))
        self.count += 1

    def close(self) -> None:
        """Close both files, even when the first fails (a full disk shows up here too)."""
        try:
            self._data.close()
        finally:
            self._index.close()

    def __enter__(self) -> "InputWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except OSError:
            if exc is None:
                raise  # else the first error is the one to report


def read_input(inputs_dir: Path, component: int) -> Tuple[Tuple, Dict[str, Any]]:
    return cloudpickle.loads(runner.read_input_bytes(str(inputs_dir), component))


def iter_inputs(inputs_dir: Path) -> Iterable[Tuple[Tuple, Dict[str, Any]]]:
    """Every component's input in order, reading the data file once."""
    with open(inputs_dir / "index", "rb") as idx, open(inputs_dir / "data", "rb") as data:
        idx.read(INDEX_ENTRY.size)
        start = 0
        while True:
            raw = idx.read(INDEX_ENTRY.size)
            if len(raw) < INDEX_ENTRY.size:
                return
            end = INDEX_ENTRY.unpack(raw)[0]
            yield cloudpickle.loads(data.read(end - start))
            start = end


def output_path(outputs_dir: Path, component: int) -> Path:
    return outputs_dir / f"{component}.out"


def output_kind(path: Path) -> Optional[str]:
    """"OK", "ERR", or None when there is no complete output file."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(ERR))
    except FileNotFoundError:
        return None
    if not head:
        return None  # a placeholder (HTCondor's wrapper makes one so a vacate can transfer it back)
    if head.startswith(OK):
        return "OK"
    if head.startswith(ERR):
        return "ERR"
    raise exceptions.InvalidOutputStatus(f"{path} is not an htmap output file")


def read_output(path: Path) -> Tuple[str, Any]:
    """("OK", value) or ("ERR", report dict)."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:  # a placeholder: the component has not written its output
        raise FileNotFoundError(f"{path} is empty: the component has written no output yet")
    if data.startswith(OK):
        return "OK", cloudpickle.loads(data[len(OK):])
    if data.startswith(ERR):
        return "ERR", pickle.loads(data[len(ERR):])
    raise exceptions.InvalidOutputStatus(f"{path} is not an htmap output file")


def write_failure(outputs_dir: Path, component: int, message: str, stderr_tail: str = "") -> None:
    """Record a component that died without output, as an error report (engines use this)."""
    report = runner.error_report(component, "failure", message, stderr_tail=stderr_tail)
    report["node_info"]["note"] = "recorded by the engine, not on the execute node"
    store.write_bytes_atomic(output_path(outputs_dir, component), ERR + pickle.dumps(report, protocol=4))


def tail(path: Path, nbytes: int = runner.TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - nbytes))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def runner_path() -> Path:
    """The runner script shipped as every job's executable."""
    return Path(runner.__file__).resolve()
