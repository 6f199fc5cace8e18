"""Packed Python installations kept for the ``transplant`` delivery method (HTMap 0.6's API).

The HTCondor engine packs the submitting Python once per content (``TRANSPLANT.DIR``, else
``HTMAP_DIR/transplants``); these functions list them and remove the ones no longer needed.
"""
from __future__ import annotations

import dataclasses
import datetime
import textwrap
from pathlib import Path
from typing import Tuple

from .engines.htcondor import delivery
from .management import human_bytes
from .settings import htmap_dir, settings


@dataclasses.dataclass(frozen=True)
class Transplant:
    """A packed Python installation, kept for the ``transplant`` delivery method.

    Get them from ``htmap.transplants()``.

    Parameters
    ----------
    hash : str
        The hash of the installation's contents, which names it.
    path : pathlib.Path
        The tarball.
    created : datetime.datetime
        When it was packed.
    size : int
        The tarball's size in bytes.
    packages : tuple of str
        The packages installed in it, as ``pip freeze`` lists them (empty if unknown).
    """

    hash: str
    path: Path
    created: datetime.datetime
    size: int
    packages: Tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> "Transplant":
        """Describe the packed installation in this tarball.

        Parameters
        ----------
        path : str or pathlib.Path
            The tarball.

        Returns
        -------
        Transplant
            Its description.

        Raises
        ------
        FileNotFoundError
            If the tarball does not exist.
        """
        path = Path(path)
        stat = path.stat()
        try:
            packages = tuple(delivery.packages_path(path).read_text().split())
        except FileNotFoundError:  # packed by an older htmap, or the list was removed
            packages = ()
        return cls(
            hash=path.name[len(delivery.TRANSPLANT_PREFIX): -len(delivery.TRANSPLANT_SUFFIX)],
            path=path,
            created=datetime.datetime.fromtimestamp(stat.st_mtime),
            size=stat.st_size,
            packages=packages,
        )

    def remove(self) -> None:
        """Delete the tarball and its package list; maps submitted later pack it again if needed."""
        for p in (self.path, delivery.packages_path(self.path)):
            p.unlink(missing_ok=True)


def transplant_dir() -> Path:
    return delivery.transplant_cache_dir(settings.to_dict(), htmap_dir())


def transplants() -> Tuple[Transplant, ...]:
    """The packed Python installations kept for the ``transplant`` delivery method.

    They are kept in ``TRANSPLANT.DIR``, else in ``HTMAP_DIR/transplants``.

    Returns
    -------
    tuple of Transplant
        The installations, oldest first.
    """
    try:
        paths = [p for p in transplant_dir().iterdir()
                 if p.name.startswith(delivery.TRANSPLANT_PREFIX) and p.name.endswith(delivery.TRANSPLANT_SUFFIX)]
    except FileNotFoundError:
        return ()
    found = []
    for p in paths:
        try:
            found.append(Transplant.load(p))
        except FileNotFoundError:  # removed meanwhile
            continue
    return tuple(sorted(found, key=lambda t: (t.created, t.hash)))


def transplant_info() -> str:
    """A readable list of the packed Python installations.

    Returns
    -------
    str
        One numbered entry per installation (the numbers ``htmap transplants remove`` takes),
        with hash, creation time, size, path and packages.
    """
    entries = []
    for index, t in enumerate(transplants()):
        packages = textwrap.fill(", ".join(t.packages) or "(unknown)", width=100, subsequent_indent="    ",
                                 break_long_words=False, break_on_hyphens=False)
        entries.append(f"# {index}\nHash: {t.hash}\nCreated at: {t.created:%Y-%m-%d %H:%M:%S}\n"
                       f"Size: {human_bytes(t.size)}\nPath: {t.path}\nPackages: {packages}")
    return "\n\n".join(entries) if entries else f"no transplant installs in {transplant_dir()}"
