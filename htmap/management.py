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
    return Map.load(tag)


def get_tags(pattern: Optional[str] = None) -> Tuple[str, ...]:
    """Tags of existing maps (damaged ones too: they can be removed), optionally filtered by a glob pattern."""
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
    """Every map that can be loaded; a damaged one is skipped with a warning naming it and its file."""
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
    """Remove a map; a damaged map only with ``force=True`` (its engine cannot be told to stop it)."""
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
    """Remove transient maps (every map with ``all=True``); returns the removed tags.

    A damaged map is removed only with ``force=True``; without it, it is named in a warning."""
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


def status_rows(maps: Optional[List[Map]] = None, include_state: bool = True,
                include_meta: bool = True) -> List[Dict[str, Any]]:
    """One dict per map: tag, counts per status (state), local data, max memory, runtimes (meta)."""
    rows = []
    for m in (maps if maps is not None else load_maps()):
        row: Dict[str, Any] = {"tag": m.tag, "components": len(m)}
        if include_state:
            counts = m.status_counts()
            row.update({s: counts.get(ComponentStatus(s), 0) for s in STATUS_COLUMNS})
        if include_meta:
            memory = m.memory_usage
            runtimes = [r.total_seconds() for r in m.runtime]
            row.update({
                "local_data_bytes": m.local_data,
                "max_memory_mb": max(memory) if memory else 0,
                "max_runtime_s": round(max(runtimes), 3) if runtimes else 0.0,
                "total_runtime_s": round(sum(runtimes), 3),
            })
        row.update({"transient": m.is_transient, "engine": m.engine})
        rows.append(row)
    return rows


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
    header = ["Tag"] + (STATUS_COLUMNS if include_state else []) + (
        ["Local Data", "Max Memory", "Max Runtime", "Total Runtime"] if include_meta else [])
    table = [header]
    for r in rows:
        cells = [("* " if mark_transient and r["transient"] else "") + r["tag"]]
        if include_state:
            cells += [str(r[s]) for s in STATUS_COLUMNS]
        if include_meta:
            cells += [human_bytes(r["local_data_bytes"]), f"{r['max_memory_mb']} MB",
                      human_seconds(r["max_runtime_s"]), human_seconds(r["total_runtime_s"])]
        table.append(cells)
    return table


def status(maps: Optional[List[Map]] = None, include_state: bool = True, include_meta: bool = True) -> str:
    """A table of every map's status."""
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
    """``{tag: row}`` as JSON; keys as in ``status_rows``."""
    rows = status_rows(maps, include_state, include_meta)
    return json.dumps({r["tag"]: r for r in rows}, indent=None if compact else 2, sort_keys=True,
                      separators=(",", ":") if compact else None)


def status_csv(maps: Optional[List[Map]] = None, include_state: bool = True, include_meta: bool = True) -> str:
    """One CSV row per map; booleans as ``true``/``false``."""
    rows = status_rows(maps, include_state, include_meta)
    out = io.StringIO()
    fields = ["tag", "components"] + (STATUS_COLUMNS if include_state else []) + (
        META_COLUMNS if include_meta else []) + ["transient", "engine"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in r.items()})
    return out.getvalue()
