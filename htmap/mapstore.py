"""Where maps live under HTMAP_DIR: ``maps/<uid>/`` directories and ``tags/<tag>`` pointers.

A tag file holds its map's uid, so retagging is a rename and a map directory never
moves. A map is loadable only once ``map.json`` says its engine accepted it.
"""
from __future__ import annotations

import fnmatch
import json
import os
import pickle
import re
import secrets
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

from . import exceptions, layout, settings as settings_module, store, tags


def root() -> Path:
    return settings_module.htmap_dir()


def maps_dir() -> Path:
    return root() / "maps"


def tags_dir() -> Path:
    return root() / "tags"


UID_SHAPE = re.compile(r"[0-9]{8}-[0-9a-f]{16}")  # what new_uid makes; nothing else names a map directory


def new_uid() -> str:
    return f"{time.strftime('%Y%m%d')}-{secrets.token_hex(8)}"


def is_uid(text: str) -> bool:
    return UID_SHAPE.fullmatch(text) is not None


def tag_path(tag: str) -> Path:
    return tags_dir() / tags.validate(tag)


def read_tag_file(tag: str) -> Optional[str]:
    """What the tag file holds (stripped), or None if there is no such tag."""
    try:
        return tag_path(tag).read_bytes().decode("utf-8", "replace").strip()
    except (FileNotFoundError, IsADirectoryError):
        return None


def uid_for_tag(tag: str) -> Optional[str]:
    """The map id the tag names; None if there is no tag or it holds no valid map id (damaged or,
    for a moment while a map is created, still empty)."""
    text = read_tag_file(tag)
    return text if text and is_uid(text) else None


class TagInfo(NamedTuple):
    """What a tag points at. ``state``: "absent", "creating", "published" or "damaged"."""
    state: str
    uid: Optional[str] = None
    problem: Optional[str] = None  # for "damaged": which file, and what is wrong with it
    meta: Optional[Dict[str, Any]] = None


def _young(path: Path) -> bool:
    """Written less than the grace period ago (a map may be being created)."""
    try:
        return time.time() - path.stat().st_mtime < RESERVATION_GRACE_SECONDS
    except FileNotFoundError:
        return False


def examine(tag: str) -> TagInfo:
    """Read a tag and its map's ``map.json`` without trusting either (the store is a trust boundary)."""
    text = read_tag_file(tag)
    if text is None:
        return TagInfo("absent")
    path = tag_path(tag)
    if not text:
        return TagInfo("creating") if _young(path) else TagInfo("damaged", problem=f"its tag file {path} is empty")
    if not is_uid(text):
        return TagInfo("damaged", problem=f"its tag file {path} holds {text[:60]!r}, which is not a map id")
    directory = map_directory(text)
    if not directory.is_dir():
        if _young(path) or directory.with_name(f".building-{text}").is_dir():
            return TagInfo("creating", text)
        return TagInfo("damaged", text, f"its directory {directory} is missing")
    try:
        meta = read_meta(directory)
    except exceptions.MapIsDamaged as e:
        return TagInfo("damaged", text, str(e))
    if meta is None:
        return TagInfo("damaged", text, f"{directory / 'map.json'} is missing")
    if not meta.get("submitted"):
        return TagInfo("creating", text, meta=meta)
    return TagInfo("published", text, meta=meta)


def damaged_hint(tag: str, problem: str) -> str:
    return (f"map {tag!r} is damaged: {problem}; remove it with `htmap remove --force {tag}` "
            f"(htmap.remove({tag!r}, force=True))")


CREATOR_FILE = "creator.json"
RESERVATION_GRACE_SECONDS = 60.0


def write_creator(directory: Path) -> None:
    """Record who is building a map, so a crashed creator's tag can be taken over."""
    store.write_text_atomic(directory / CREATOR_FILE, json.dumps({"host": os.uname().nodename, "pid": os.getpid()}))


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie included; ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_published(uid: str) -> bool:
    try:
        meta = read_meta(map_directory(uid))
    except exceptions.MapIsDamaged:
        return True  # a damaged map is not a creation that died: only remove --force deletes it
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
            return not pid_exists(int(creator.get("pid", 0)))
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
    info = examine(tag)
    if info.state == "damaged":
        raise exceptions.TagAlreadyExists(f"{damaged_hint(tag, info.problem or '')}, or choose another tag")
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
    """``maps/<uid>``; an id read from disk is checked first, so it can never name a path elsewhere."""
    if not is_uid(uid):
        raise exceptions.MapIsDamaged(f"{uid!r} is not a map id (a tag file or request was tampered with)")
    return maps_dir() / uid


META_KEYS = ("num_components", "engine")


def read_meta(directory: Path) -> Optional[Dict[str, Any]]:
    """The map's ``map.json``; None if there is none; MapIsDamaged if it cannot be read."""
    path = directory / "map.json"
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:  # not JSON, or not UTF-8
        raise exceptions.MapIsDamaged(f"{path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or not all(k in meta for k in META_KEYS):
        raise exceptions.MapIsDamaged(f"{path} does not describe a map (it lacks {', '.join(META_KEYS)})")
    if not isinstance(meta["num_components"], int) or meta["num_components"] < 1:
        raise exceptions.MapIsDamaged(f"{path} gives {meta['num_components']!r} components")
    return meta


def write_meta(directory: Path, meta: Dict[str, Any]) -> None:
    store.write_text_atomic(directory / "map.json", json.dumps(meta, indent=1))


def write_job(directory: Path, job_fields: Dict[str, Any]) -> None:
    store.write_bytes_atomic(directory / "job.pkl", pickle.dumps(job_fields, protocol=pickle.HIGHEST_PROTOCOL))


def read_job(directory: Path) -> Dict[str, Any]:
    """The job set's fields (maps written before sharding get ``layout`` ``FLAT``); MapIsDamaged if
    ``job.pkl`` is missing or cannot be unpickled."""
    path = directory / "job.pkl"
    try:
        with open(path, "rb") as f:
            fields = pickle.load(f)
    except FileNotFoundError:
        raise exceptions.MapIsDamaged(f"{path} is missing") from None
    except Exception as e:  # truncated (EOFError), garbled (UnpicklingError, ...)
        raise exceptions.MapIsDamaged(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(fields, dict):
        raise exceptions.MapIsDamaged(f"{path} does not hold a job set")
    fields["layout"] = layout.version_of(fields)
    return fields


def remove_damaged(tag: str) -> None:
    """Delete a damaged map: its directory (only if the tag names a valid map id) and its tag file."""
    uid = uid_for_tag(tag)
    if uid is not None:
        store.remove_tree(map_directory(uid).with_name(f".building-{uid}"))
        store.remove_tree(map_directory(uid))
    try:
        os.unlink(tag_path(tag))
    except FileNotFoundError:
        pass


def closest_tags(tag: str, n: int = 3) -> List[str]:
    import difflib

    return difflib.get_close_matches(tag, all_tags(), n=n, cutoff=0.5)


def tag_not_found(tag: str) -> exceptions.TagNotFound:
    hint = closest_tags(tag)
    extra = f"; did you mean {', '.join(hint)}?" if hint else ""
    return exceptions.TagNotFound(f"no map with tag {tag!r}{extra}")
