"""Functions over all maps: load, list, remove, clean, status tables."""
from __future__ import annotations

import csv
import io
import json
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import exceptions, mapstore, store
from .maps import Map
from .state import ComponentStatus


def load(tag: str) -> Map:
    """Load the map with this tag.

    Parameters
    ----------
    tag : str
        The map's tag.

    Returns
    -------
    Map
        The map (the same object each time within one process).

    Raises
    ------
    htmap.exceptions.TagNotFound
        If no map has this tag.
    """
    return Map.load(tag)


def get_tags(pattern: Optional[str] = None) -> Tuple[str, ...]:
    """The tags of the existing maps (damaged ones too: they can be removed).

    Parameters
    ----------
    pattern : str, optional
        A glob pattern (``"sim-*"``); only matching tags are returned.

    Returns
    -------
    tuple of str
        The tags.
    """
    found = mapstore.matching_tags(pattern) if pattern else mapstore.all_tags()
    return tuple(t for t in found if mapstore.examine(t).state in ("published", "damaged"))


def _published(tag: str) -> bool:
    """Maps still being created (or whose creator died) have a tag but are not maps yet."""
    return mapstore.examine(tag).state == "published"


def damaged_maps(pattern: Optional[str] = None) -> Dict[str, str]:
    """``{tag: what is wrong}`` for every map that cannot be loaded because a file of it is damaged."""
    out = {}
    for tag in get_tags(pattern):
        try:
            Map.load(tag)
        except exceptions.MapIsDamaged as e:
            out[tag] = str(e)
        except exceptions.TagNotFound:
            continue
    return out


def load_maps(pattern: Optional[str] = None) -> Tuple[Map, ...]:
    """Load every existing map, or those whose tags match a pattern.

    Parameters
    ----------
    pattern : str, optional
        A glob pattern (``"sim-*"``); only maps with matching tags are loaded.

    Returns
    -------
    tuple of Map
        The maps. A damaged map is left out, with a warning naming it and its file.
    """
    maps = []
    for tag in get_tags(pattern):
        try:
            maps.append(Map.load(tag))
        except exceptions.TagNotFound:
            continue  # removed or still being created meanwhile
        except exceptions.MapIsDamaged as e:
            warnings.warn(str(e), UserWarning, stacklevel=2)
    return tuple(maps)


def remove(tag: str, not_exist_ok: bool = True, force: bool = False) -> None:
    """Remove the map with this tag: stop its components and delete all its files.

    Parameters
    ----------
    tag : str
        The map's tag.
    not_exist_ok : bool, optional
        Do nothing if no map has this tag (the default); with ``False``, raise instead.
    force : bool, optional
        Delete the files even if the map's engine could not be told to stop the components.
        Needed to remove a damaged map (its engine cannot be told anything).

    Raises
    ------
    htmap.exceptions.TagNotFound
        If no map has this tag and ``not_exist_ok`` is ``False``.
    htmap.exceptions.MapIsDamaged
        If the map is damaged and ``force`` is ``False``.
    """
    try:
        m = Map.load(tag)
    except exceptions.TagNotFound:
        if not_exist_ok:
            return
        raise
    except exceptions.MapIsDamaged:
        if not force:
            raise
        mapstore.remove_damaged(tag)
        return
    m.remove(force=force)


def clean(all: bool = False, force: bool = False) -> List[str]:
    """Remove the transient maps (those created without a tag), or every map.

    Also deletes what maps whose creation was interrupted left behind.

    Parameters
    ----------
    all : bool, optional
        Remove every map, not only the transient ones. Default ``False``.
    force : bool, optional
        Delete map files even if an engine could not be told to stop the components, and
        delete damaged maps (without it, each is named in a warning and kept).

    Returns
    -------
    list of str
        The tags of the removed maps.
    """
    removed = []
    for tag in get_tags():
        try:
            m = Map.load(tag)
        except exceptions.TagNotFound:
            continue
        except exceptions.MapIsDamaged as e:
            if force:
                mapstore.remove_damaged(tag)
                removed.append(tag)
            else:
                warnings.warn(str(e), UserWarning, stacklevel=2)
            continue
        if all or m.is_transient:
            removed.append(m.tag)
            m.remove(force=force)
    _clean_leftovers()
    return removed


def _clean_leftovers() -> None:
    """Directories of maps whose creation was interrupted (kill -9) or that no tag points at."""
    referenced = set()
    for tag in mapstore.all_tags():
        mapstore.take_over_stale(tag)
        uid = mapstore.uid_for_tag(tag)
        if uid:
            referenced.add(uid)
    try:
        entries = list(mapstore.maps_dir().iterdir())
    except FileNotFoundError:
        return
    import time

    for path in entries:
        name = path.name
        stale = time.time() - path.stat().st_mtime > 3600
        if name.startswith(".building-") or name.startswith("."):
            if stale:
                store.remove_tree(path)
        elif name not in referenced and stale:
            store.remove_tree(path)


STATUS_COLUMNS = [s.value for s in ComponentStatus.display_statuses()]


META_COLUMNS = ["local_data_bytes", "max_memory_mb", "max_runtime_s", "total_runtime_s"]

IDENTITY_COLUMNS = ["tag", "engine", "transient", "components"]

# what HTMap 0.6's status_json / status_csv gave, kept after our own fields for its scripts
STATUSES_0_6 = ["held", "errored", "idle", "running", "completed"]
META_0_6 = ["local_disk_usage", "max_memory_usage", "max_runtime", "total_runtime"]


def fields_0_6(include_state: bool = True, include_meta: bool = True, nested: bool = True) -> List[str]:
    """HTMap 0.6's status fields: JSON nests the counts (``component_status_counts``), CSV does not.

    Parameters
    ----------
    include_state
        Include the counts of components per status.
    include_meta
        Include disk, memory (bytes) and runtime (seconds) figures.
    nested
        The JSON form (one ``component_status_counts`` field) rather than the CSV form.

    Returns
    -------
    fields
        Field names, after ``record_fields``.
    """
    state = (["component_status_counts"] if nested else STATUSES_0_6) if include_state else []
    return state + (META_0_6 if include_meta else [])


def record_fields(include_state: bool = True, include_meta: bool = True) -> List[str]:
    """The fields of a map's status record, in the order of ``status_csv`` and ``htmap status --format csv``.

    Parameters
    ----------
    include_state
        Include the counts of components per status.
    include_meta
        Include local data, memory and runtime figures.

    Returns
    -------
    fields
        Field names, in CSV column order.
    """
    return IDENTITY_COLUMNS + (STATUS_COLUMNS if include_state else []) + (META_COLUMNS if include_meta else [])


def status_rows(maps: Optional[List[Map]] = None, include_state: bool = True,
                include_meta: bool = True) -> List[Dict[str, Any]]:
    """One dict per map: tag, counts per status (state), local data, max memory, runtimes (meta)."""
    rows = []
    for m in (maps if maps is not None else load_maps()):
        row: Dict[str, Any] = {"tag": m.tag, "components": len(m)}
        if include_state:
            counts = m.status_counts()
            row.update({s: counts.get(ComponentStatus(s), 0) for s in STATUS_COLUMNS})
            row["component_status_counts"] = {s: row[s.upper()] for s in STATUSES_0_6}
        if include_meta:
            memory = m.memory_usage
            runtimes = [r.total_seconds() for r in m.runtime]
            row.update({
                "local_data_bytes": m.local_data,
                "max_memory_mb": max(memory) if memory else 0,
                "max_runtime_s": round(max(runtimes), 3) if runtimes else 0.0,
                "total_runtime_s": round(sum(runtimes), 3),
            })
            row.update({"local_disk_usage": row["local_data_bytes"], "max_memory_usage": row["max_memory_mb"] * 1024 ** 2,
                        "max_runtime": row["max_runtime_s"], "total_runtime": row["total_runtime_s"]})
        row.update({"transient": m.is_transient, "engine": m.engine})
        rows.append(row)
    return rows


def csv_row(row: Dict[str, Any]) -> Dict[str, Any]:
    """A status row with HTMap 0.6's per-status counts flat, as its CSV had them."""
    flat = dict(row)
    flat.update(row.get("component_status_counts", {}))
    return flat


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def human_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}"


def aligned_table(rows: List[List[str]], right: Sequence[bool], header: bool = True) -> List[str]:
    """Aligned lines (two spaces between columns); the first row is a header if ``header``."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)]
        lines.append("  ".join(cells).rstrip())
        if header and j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def status_cells(rows: List[Dict[str, Any]], include_state: bool = True, include_meta: bool = True,
                 mark_transient: bool = False) -> List[List[str]]:
    """The status table as strings: a header, then one row per map (shared with the CLI)."""
    header = ["Tag", "Components"] + (STATUS_COLUMNS if include_state else []) + (
        ["Local Data", "Max Memory", "Max Runtime", "Total Runtime"] if include_meta else [])
    table = [header]
    for r in rows:
        cells = [("* " if mark_transient and r["transient"] else "") + r["tag"], str(r["components"])]
        if include_state:
            cells += [str(r[s]) for s in STATUS_COLUMNS]
        if include_meta:
            cells += [human_bytes(r["local_data_bytes"]), f"{r['max_memory_mb']} MB",
                      human_seconds(r["max_runtime_s"]), human_seconds(r["total_runtime_s"])]
        table.append(cells)
    return table


def status(maps: Optional[List[Map]] = None, include_state: bool = True, include_meta: bool = True) -> str:
    """A table of the maps' status, as ``htmap status`` prints it.

    Parameters
    ----------
    maps : list of Map, optional
        The maps to include. ``None`` (the default) means every map.
    include_state : bool, optional
        Include how many components have each status. Default ``True``.
    include_meta : bool, optional
        Include disk use, peak memory and run times. Default ``True``.

    Returns
    -------
    str
        The table: one row per map, then a line for each damaged map naming what is wrong.
    """
    damaged: Dict[str, str] = {}
    if maps is None:
        damaged = damaged_maps()
        maps = [m for m in _quietly(load_maps)]
    table = status_cells(status_rows(maps, include_state, include_meta), include_state, include_meta)
    lines = aligned_table(table, [False] + [True] * (len(table[0]) - 1))
    return "\n".join(lines + [f"{tag}: DAMAGED: {why}" for tag, why in sorted(damaged.items())])


def _quietly(func):
    """Call ``func`` without its warnings (when the caller reports the same thing itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func()


def status_json(maps: Optional[List[Map]] = None, include_state: bool = True, include_meta: bool = True,
                compact: bool = False) -> str:
    """The maps' status as JSON.

    Parameters
    ----------
    maps : list of Map, optional
        The maps to include. ``None`` (the default) means every map.
    include_state : bool, optional
        Include how many components have each status. Default ``True``.
    include_meta : bool, optional
        Include disk use, peak memory and run times. Default ``True``.
    compact : bool, optional
        One line without spaces instead of indented JSON. Default ``False``.

    Returns
    -------
    str
        A JSON object ``{tag: {column: value}}``, keys sorted.
    """
    rows = status_rows(maps, include_state, include_meta)
    fields = record_fields(include_state, include_meta) + fields_0_6(include_state, include_meta)
    return json.dumps({r["tag"]: {k: r[k] for k in fields} for r in rows}, indent=None if compact else 2,
                      sort_keys=True, separators=(",", ":") if compact else None)


def status_csv(maps: Optional[List[Map]] = None, include_state: bool = True, include_meta: bool = True) -> str:
    """The maps' status as CSV, one row per map after a header; booleans are ``true``/``false``.

    Parameters
    ----------
    maps : list of Map, optional
        The maps to include. ``None`` (the default) means every map.
    include_state : bool, optional
        Include how many components have each status. Default ``True``.
    include_meta : bool, optional
        Include disk use, peak memory and run times. Default ``True``.

    Returns
    -------
    str
        The CSV text.
    """
    rows = status_rows(maps, include_state, include_meta)
    out = io.StringIO()
    fields = record_fields(include_state, include_meta) + fields_0_6(include_state, include_meta, nested=False)
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in csv_row(r).items()})
    return out.getvalue()
