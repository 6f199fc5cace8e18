"""Where a map keeps each component's files: the one place that computes those paths.

AFS holds about 16,000-25,000 entries per directory, so every directory that grows with
the number of components is *sharded*: component 12345's output is
``outputs/0/012/12345.out`` (``runner.shard``), at most ``runner.SHARD_SIZE`` components per
leaf directory and as many leaves per middle directory. Every engine writes through this
module (the local worker and the Slurm job script through ``runner.component_dir``, the
same function, since they run without htmap; HTCondor through the submit description).

Maps made before sharding (``FLAT``) keep their flat directories: a map's layout version is
recorded in its ``job.pkl`` and old maps, which lack it, load as ``FLAT``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Set

from . import runner, store

FLAT = 1  # htmap before sharding: outputs/<i>.out, logs/<i>.stdout, output_files/<i>/, ...
SHARDED = 2  # outputs/<shard>/<i>.out, ...
CURRENT = SHARDED

SHARD_SIZE = runner.SHARD_SIZE
shard = runner.shard

# directories of a map with entries per component (relative to the map directory)
OUTPUTS = "outputs"
LOGS = "logs"
OUTPUT_FILES = "output_files"
CHECKPOINTS = "engine/checkpoints"
ENGINE_INPUTS = "engine/inputs"  # HTCondor: each job's own input file, or input chunks
MADE_AT_CREATION = (OUTPUTS, LOGS, OUTPUT_FILES)  # job-side writers expect these shards to exist


def version_of(job_fields: Dict[str, Any]) -> int:
    """The layout version of a map from its stored job fields (``FLAT`` when not recorded)."""
    return int(job_fields.get("layout", FLAT))


class Layout:
    """Paths of one map's per-component files.

    Parameters
    ----------
    directory
        The map's directory.
    version
        ``SHARDED`` (every new map) or ``FLAT`` (maps made before sharding).
    """

    def __init__(self, directory: Path, version: int = CURRENT):
        if version not in (FLAT, SHARDED):
            raise ValueError(f"unknown map layout version {version!r}")
        self.directory = Path(directory)
        self.version = version
        self._root = str(self.directory)

    @property
    def sharded(self) -> bool:
        return self.version == SHARDED

    def component_dir(self, base: Path, component: int) -> Path:
        """The directory under ``base`` (a per-component directory) that holds ``component``."""
        return Path(runner.component_dir(str(base), component, self.sharded))

    def relative(self, sub: str, component: int, name: str) -> str:
        """``sub/<shard>/name``: where ``component``'s entry ``name`` of the per-component
        directory ``sub`` lives, relative to the map directory (every path below is this)."""
        if self.version == SHARDED:
            return f"{sub}/{shard(component)}/{name}"
        return f"{sub}/{name}"

    def _path(self, sub: str, component: int, name: str) -> Path:
        # one string, one Path: reading a million outputs must not cost a million Path joins
        return Path(f"{self._root}/{self.relative(sub, component, name)}")

    def output(self, component: int) -> Path:
        """The output file (return value or error report) of ``component``."""
        return self._path(OUTPUTS, component, f"{component}.out")

    def log(self, component: int, stream: str) -> Path:
        """The captured ``stdout`` or ``stderr`` of ``component``."""
        return self._path(LOGS, component, f"{component}.{stream}")

    def output_files(self, component: int) -> Path:
        """The directory of the files ``component`` sent back (``htmap.transfer_output_files``)."""
        return self._path(OUTPUT_FILES, component, str(component))

    def checkpoint(self, component: int) -> Path:
        """The directory of ``component``'s last checkpoint (engines that keep it in the map)."""
        return self._path(CHECKPOINTS, component, str(component))

    def engine_input(self, component: int, name: str) -> Path:
        """A file of HTCondor's per-job inputs, kept in ``component``'s shard."""
        return self._path(ENGINE_INPUTS, component, name)

    def shards(self, components: Iterable[int]) -> Set[str]:
        """The distinct shard sub-paths of ``components`` (``{""}`` for a flat map)."""
        if not self.sharded:
            return {""}
        if isinstance(components, range) and components.step == 1:  # a whole map: one per shard
            components = range(components.start - components.start % SHARD_SIZE, components.stop, SHARD_SIZE)
        return {shard(c) for c in components}

    def make_dirs(self, components: Iterable[int], subs: Iterable[str] = MADE_AT_CREATION) -> None:
        """Create the (private) shard directories of ``components`` under each of ``subs``."""
        names = self.shards(components)
        for sub in subs:
            for name in sorted(names):
                store.make_dir(self.directory / sub / name if name else self.directory / sub)

    def iter_component_dirs(self, sub: str) -> Iterator[Path]:
        """Every existing directory of ``sub`` that holds component entries (to scan them all)."""
        base = self.directory / sub
        if not self.sharded:
            if base.is_dir():
                yield base
            return
        for top in _subdirs(base):
            yield from _subdirs(top)


def _subdirs(path: Path) -> Iterator[Path]:
    try:
        names = sorted(n for n in _listdir(path) if not n.startswith("."))
    except FileNotFoundError:
        return
    for name in names:
        child = path / name
        if child.is_dir():
            yield child


def _listdir(path: Path) -> list:
    import os

    return os.listdir(path)
