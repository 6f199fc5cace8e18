"""Files that travel with components: ``TransferPath`` and the file specs engines receive.

A file spec is a string: an absolute local path, or a URL (``root://``, ``https://``,
``s3://``, ``osdf://``, ``file://``). A trailing ``/`` on a directory means "its contents".
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

from . import exceptions


class TransferPath:
    """A file or directory to transfer into a component's working directory, local or remote.

    Give ``TransferPath`` objects as (parts of) a component's arguments, or in the
    ``fixed_input_files`` / ``input_files`` map options: the file is transferred. In an
    argument, the function receives the path of the copy in its working directory instead.
    ``TransferPath("data/in.txt")`` is a local file; ``TransferPath("/store/f.root",
    protocol="root", location="eosuser.cern.ch")`` is ``root://eosuser.cern.ch//store/f.root``.
    Other attributes are those of the underlying path (``.name``, ``.suffix``,
    ``.read_text()``), and ``/`` joins like ``pathlib``.

    Parameters
    ----------
    path : str or os.PathLike
        The path; a local one is made absolute (``~`` is expanded), a remote one is kept as given.
    protocol : str, optional
        A URL scheme (``"root"``, ``"https"``, ``"osdf"``, ...). Without it the path is local.
    location : str, optional
        The host (and port) of the URL, e.g. ``"eosuser.cern.ch"``. Needs ``protocol``.

    Raises
    ------
    ValueError
        If ``location`` is given without ``protocol``.
    """

    def __init__(self, path: Any, protocol: Optional[str] = None, location: Optional[str] = None):
        if location is not None and protocol is None:
            raise ValueError("a TransferPath with a location needs a protocol too, e.g. protocol='root'")
        self.protocol = protocol
        self.location = location
        if protocol is None:
            self.path = Path(path).expanduser().absolute()
        else:
            self.path = PurePosixPath(path)

    @classmethod
    def cwd(cls) -> "TransferPath":
        """The current working directory, as a local ``TransferPath``.

        Returns
        -------
        TransferPath
            The directory.
        """
        return cls(Path.cwd())

    @classmethod
    def home(cls) -> "TransferPath":
        """The user's home directory, as a local ``TransferPath``.

        Returns
        -------
        TransferPath
            The directory.
        """
        return cls(Path.home())

    def as_url(self) -> str:
        """The path as a URL.

        Returns
        -------
        str
            ``file:///...`` for a local path, else ``protocol://location/path`` (XRootD's
            ``root://host//abs/path`` form for ``protocol="root"``).
        """
        if self.protocol is None:
            return self.path.as_uri()
        path = str(self.path)
        if self.protocol != "root":  # XRootD wants root://host//abs/path; others one slash
            path = path.lstrip("/")
        return f"{self.protocol}://{self.location or ''}/{path}"

    def spec(self) -> str:
        """How the path is given to engines.

        Returns
        -------
        str
            A plain absolute path for a local file, else the URL.
        """
        if self.protocol is None or self.protocol == "file":
            return str(self.path)
        return self.as_url()

    def __truediv__(self, other: Any) -> "TransferPath":
        return TransferPath(self.path / other, protocol=self.protocol, location=self.location)

    def __getattr__(self, name: str) -> Any:
        if name in ("path", "protocol", "location") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.path, name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TransferPath) and self.as_url() == other.as_url()

    def __hash__(self) -> int:
        return hash(("TransferPath", self.as_url()))

    def __repr__(self) -> str:
        extra = f", protocol={self.protocol!r}, location={self.location!r}" if self.protocol else ""
        return f"TransferPath({str(self.path)!r}{extra})"

    def __str__(self) -> str:
        return self.spec()

    def __fspath__(self) -> str:
        if self.protocol not in (None, "file"):
            raise TypeError(f"{self!r} is a URL, not a local path")
        return str(self.path)

    def __getstate__(self) -> Dict[str, Any]:
        return {"path": str(self.path), "protocol": self.protocol, "location": self.location}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.protocol, self.location = state["protocol"], state["location"]
        self.path = Path(state["path"]) if self.protocol is None else PurePosixPath(state["path"])


def is_url(spec: str) -> bool:
    return "://" in spec


def to_spec(entry: Any) -> str:
    """A user's file entry (TransferPath, Path or str) as a file spec; keeps a trailing ``/``."""
    if isinstance(entry, TransferPath):
        return entry.spec()
    text = os.fspath(entry) if isinstance(entry, os.PathLike) else str(entry)
    if is_url(text):
        if text.startswith("file://"):
            text = urlsplit(text).path + ("/" if text.endswith("/") else "")
        else:
            return text
    trailing = text.endswith("/") and len(text) > 1
    path = str(Path(text).expanduser().absolute())
    return path + "/" if trailing else path


def staged_name(spec: str) -> str:
    """The name a spec gets in the working directory ("" for a directory's contents)."""
    if spec.endswith("/"):
        return ""
    return PurePosixPath(urlsplit(spec).path if is_url(spec) else spec).name


def extract_transfer_paths(args: Tuple, kwargs: Dict[str, Any]) -> Tuple[Tuple, Dict[str, Any], List[str]]:
    """Replace TransferPaths in (nested) arguments by ``Path("./<name>")``; return their specs."""
    found: Dict[str, str] = {}

    def swap(value: Any) -> Any:
        if isinstance(value, TransferPath):
            spec = value.spec()
            name = staged_name(spec)
            if name in found and found[name] != spec:
                raise exceptions.InvalidOption(
                    f"two different input files are both named {name!r} in one component ({found[name]} and {spec}); "
                    "they would overwrite each other in its working directory: rename one of them"
                )
            found[name] = spec
            return Path(".") / name
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(swap(v) for v in value)
        if isinstance(value, (set, frozenset)):
            return type(value)(swap(v) for v in value)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    new_args = tuple(swap(a) for a in args)
    new_kwargs = {k: swap(v) for k, v in kwargs.items()}
    return new_args, new_kwargs, list(found.values())


def check_name_collisions(specs: Iterable[str], component: int) -> None:
    seen: Dict[str, str] = {}
    for spec in specs:
        name = staged_name(spec)
        if not name:
            continue
        if name in seen and seen[name] != spec:
            raise exceptions.InvalidOption(
                f"component {component} has two different input files named {name!r} ({seen[name]} and {spec}); "
                "they would overwrite each other in its working directory: rename one of them"
            )
        seen[name] = spec
