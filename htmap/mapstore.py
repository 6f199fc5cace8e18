"""Where maps live under HTMAP_DIR: ``maps/<uid>/`` directories and ``tags/<tag>`` pointers.

A tag file holds its map's uid, so retagging is a rename and a map directory never
moves. A map is loadable only once ``map.json`` says its engine accepted it.
"""
from __future__ import annotations

import fnmatch
import json
import os
import pickle
import secrets
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import exceptions, layout, settings as settings_module, store, tags


def root() -> Path:
    return settings_module.htmap_dir()


def maps_dir() -> Path:
    return root() / "maps"


def tags_dir() -> Path:
    return root() / "tags"


def new_uid() -> str:
    return f"{time.strftime('%Y%m%d')}-{secrets.token_hex(8)}"


def tag_path(tag: str) -> Path:
    return tags_dir() / tags.validate(tag)


def uid_for_tag(tag: str) -> Optional[str]:
    try:
        uid = tag_path(tag).read_text().strip()
    except FileNotFoundError:
        return None
    return uid or None


CREATOR_FILE = "creator.json"
RESERVATION_GRACE_SECONDS = 60.0


def write_creator(directory: Path) -> None:
    """Record who is building a map, so a crashed creator's tag can be taken over."""
    store.write_text_atomic(directory / CREATOR_FILE, json.dumps({"host": os.uname().nodename, "pid": os.getpid()}))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_published(uid: str) -> bool:
    meta = read_meta(map_directory(uid))
    return bool(meta and meta.get("submitted"))


def reservation_is_stale(tag: str) -> bool:
    """True if the tag points at a map whose creation died (kill -9, power loss)."""
    uid = uid_for_tag(tag)
    if uid is None:
        return False
    if is_published(uid):
        return False
    for directory in (map_directory(uid), map_directory(uid).with_name(f".building-{uid}")):
        try:
            creator = json.loads((directory / CREATOR_FILE).read_text())
        except (FileNotFoundError, ValueError):
            continue
        if creator.get("host") == os.uname().nodename:
            return not _pid_alive(int(creator.get("pid", 0)))
        return False  # being built on another host: cannot tell, so respect it
    try:
        age = time.time() - tag_path(tag).stat().st_mtime
    except FileNotFoundError:
        return False
    return age > RESERVATION_GRACE_SECONDS


def take_over_stale(tag: str) -> bool:
    """Remove a dead creator's tag and half-built directories; True if it did."""
    if not reservation_is_stale(tag):
        return False
    uid = uid_for_tag(tag)
    if uid:
        store.remove_tree(map_directory(uid).with_name(f".building-{uid}"))
        store.remove_tree(map_directory(uid))
        release_tag(tag, uid)
    return True


def reserve_tag(tag: str, uid: str) -> None:
    store.make_dir(tags_dir())
    if store.create_exclusive(tag_path(tag), uid.encode()):
        return
    if take_over_stale(tag) and store.create_exclusive(tag_path(tag), uid.encode()):
        return
    raise exceptions.TagAlreadyExists(
        f"a map with tag {tag!r} already exists; load it with htmap.load({tag!r}), remove it with "
        f"htmap.remove({tag!r}), or choose another tag"
    )


def release_tag(tag: str, uid: str) -> None:
    """Delete the tag file if it still points at ``uid``."""
    if uid_for_tag(tag) == uid:
        try:
            os.unlink(tag_path(tag))
        except FileNotFoundError:
            pass


def rename_tag(old: str, new: str, uid: str) -> None:
    reserve_tag(new, uid)
    release_tag(old, uid)


def all_tags() -> List[str]:
    try:
        names = os.listdir(tags_dir())
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith("."))


def matching_tags(*patterns: str) -> List[str]:
    found = all_tags()
    if not patterns:
        return found
    return [t for t in found if any(fnmatch.fnmatchcase(t, p) for p in patterns)]


def map_directory(uid: str) -> Path:
    return maps_dir() / uid


def read_meta(directory: Path) -> Optional[Dict[str, Any]]:
    try:
        with open(directory / "map.json") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_meta(directory: Path, meta: Dict[str, Any]) -> None:
    store.write_text_atomic(directory / "map.json", json.dumps(meta, indent=1))


def write_job(directory: Path, job_fields: Dict[str, Any]) -> None:
    store.write_bytes_atomic(directory / "job.pkl", pickle.dumps(job_fields, protocol=pickle.HIGHEST_PROTOCOL))


def read_job(directory: Path) -> Dict[str, Any]:
    """The stored job fields; maps written before sharding get ``layout`` ``FLAT``."""
    with open(directory / "job.pkl", "rb") as f:
        fields = pickle.load(f)
    fields["layout"] = layout.version_of(fields)
    return fields


def closest_tags(tag: str, n: int = 3) -> List[str]:
    import difflib

    return difflib.get_close_matches(tag, all_tags(), n=n, cutoff=0.5)


def tag_not_found(tag: str) -> exceptions.TagNotFound:
    hint = closest_tags(tag)
    extra = f"; did you mean {', '.join(hint)}?" if hint else ""
    return exceptions.TagNotFound(f"no map with tag {tag!r}{extra}")
