"""Creating maps: map, starmap, build_map and the @mapped decorator."""
from __future__ import annotations

import functools
import itertools
import os
import sys
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from . import delivery, engines, exceptions, jobfiles, mapstore, store, tags, transfer
from .engines import JobSet
from .maps import Map
from .options import MapOptions, resolve
from .settings import settings


def map(func: Callable, args: Iterable[Any], map_options: Optional[MapOptions] = None,
        tag: Optional[str] = None, quiet: bool = False) -> Map:
    """Map ``func`` over ``args``: one component per element, called as ``func(arg)``."""
    return create_map(func, ((( a,), {}) for a in args), map_options=map_options, tag=tag, quiet=quiet)


def starmap(func: Callable, args: Optional[Iterable[Tuple]] = None, kwargs: Optional[Iterable[Dict[str, Any]]] = None,
            map_options: Optional[MapOptions] = None, tag: Optional[str] = None, quiet: bool = False) -> Map:
    """One component per pair of (args, kwargs), zipped longest; a missing side is () / {}."""
    if args is None:
        args = ()
    if kwargs is None:
        kwargs = ()
    pairs = ((tuple(a) if a is not None else (), dict(k) if k is not None else {})
             for a, k in itertools.zip_longest(args, kwargs, fillvalue=None))
    return create_map(func, pairs, map_options=map_options, tag=tag, quiet=quiet)


class MapBuilder:
    """Collects calls inside a ``with`` block and submits them as one map on clean exit."""

    def __init__(self, func: Callable, map_options: Optional[MapOptions] = None, tag: Optional[str] = None,
                 quiet: bool = False):
        self.func = func
        self.map_options = map_options
        self.tag = tag
        self.quiet = quiet
        self._calls: List[Tuple[Tuple, Dict[str, Any]]] = []
        self._map: Optional[Map] = None

    def __enter__(self) -> "MapBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._map = create_map(self.func, iter(self._calls), map_options=self.map_options, tag=self.tag,
                                   quiet=self.quiet)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self._calls.append((args, kwargs))

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def map(self) -> Map:
        if self._map is None:
            raise exceptions.NoMapYet("the map is created when the with-block ends; use .map after it")
        return self._map


def build_map(func: Callable, map_options: Optional[MapOptions] = None, tag: Optional[str] = None,
              quiet: bool = False) -> MapBuilder:
    return MapBuilder(func, map_options=map_options, tag=tag, quiet=quiet)


class MappedFunction:
    """A function with ``.map``, ``.starmap`` and ``.build_map`` that still calls normally."""

    def __init__(self, func: Callable, map_options: Optional[MapOptions] = None):
        self.func = func
        self.map_options = map_options if map_options is not None else MapOptions()
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"MappedFunction({self.func!r}, map_options={self.map_options!r})"

    def _options(self, map_options: Optional[MapOptions]) -> MapOptions:
        return MapOptions.merge(self.map_options, map_options)

    def map(self, args: Iterable[Any], tag: Optional[str] = None, map_options: Optional[MapOptions] = None,
            quiet: bool = False) -> Map:
        return map(self.func, args, map_options=self._options(map_options), tag=tag, quiet=quiet)

    def starmap(self, args=None, kwargs=None, tag: Optional[str] = None, map_options: Optional[MapOptions] = None,
                quiet: bool = False) -> Map:
        return starmap(self.func, args, kwargs, map_options=self._options(map_options), tag=tag, quiet=quiet)

    def build_map(self, tag: Optional[str] = None, map_options: Optional[MapOptions] = None,
                  quiet: bool = False) -> MapBuilder:
        return build_map(self.func, map_options=self._options(map_options), tag=tag, quiet=quiet)


def mapped(func: Optional[Callable] = None, *, map_options: Optional[MapOptions] = None):
    """``@mapped``, ``@mapped()`` or ``@mapped(map_options=...)``."""
    if func is None:
        return lambda f: MappedFunction(f, map_options=map_options)
    return MappedFunction(func, map_options=map_options)


# -- creation -------------------------------------------------------------------

def _interactive() -> bool:
    return hasattr(sys, "ps1") or "IPython" in sys.modules and _in_ipython()


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython  # type: ignore

        return get_ipython() is not None
    except Exception:
        return False


def _max_components() -> int:
    value = settings.get("MAX_COMPONENTS", 10_000_000)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise exceptions.InvalidOption(f"setting MAX_COMPONENTS={value!r} must be a whole number, 1 or more")
    return value


def _checked_inputs(pairs: Iterator[Tuple[Tuple, Dict[str, Any]]]) -> Iterator[Tuple[Tuple, Dict[str, Any]]]:
    """Turn an exception from the caller's iterator into a clear htmap error; stop an endless one."""
    count = 0
    limit = _max_components()
    while True:
        try:
            pair = next(pairs)
        except StopIteration:
            return
        except Exception as e:
            raise exceptions.InputIteratorFailed(
                f"the input iterator raised {type(e).__name__}: {e} after {count} inputs; nothing was submitted"
            ) from e
        if count == limit:
            raise exceptions.TooManyComponents(
                f"the inputs go past MAX_COMPONENTS={limit} (is the input iterator endless?); nothing was "
                f"submitted. Give a finite input, or raise the limit: htmap.settings['MAX_COMPONENTS'] = ..."
            )
        count += 1
        yield pair


def _engine_settings() -> Dict[str, Any]:
    snapshot = settings.to_dict()
    snapshot["HTMAP_DIR"] = str(mapstore.root())
    return snapshot


def create_map(func: Callable, pairs: Iterator[Tuple[Tuple, Dict[str, Any]]],
               map_options: Optional[MapOptions] = None, tag: Optional[str] = None, quiet: bool = False) -> Map:
    """Validate everything, write the job set, submit it, then publish the map."""
    if isinstance(func, MappedFunction):
        map_options = MapOptions.merge(func.map_options, map_options)
        func = func.func
    if not callable(func):
        raise exceptions.HTMapException(f"the function to map must be callable, not {type(func).__name__}")
    defaults = MapOptions(**settings.get("MAP_OPTIONS", {}) or {})
    options = MapOptions.merge(defaults, map_options)
    engine_name, _why = engines.resolve_name(str(settings["ENGINE"]))
    delivery.check_delivery_method(str(settings["DELIVERY_METHOD"]))
    transient = tag is None
    if tag is None:
        tag = _free_random_tag()
    else:
        tags.validate(tag)
    uid = mapstore.new_uid()
    store.make_dir(mapstore.maps_dir())
    mapstore.reserve_tag(tag, uid)
    final = mapstore.map_directory(uid)
    building = final.with_name(f".building-{uid}")
    published = False
    try:
        store.make_dir(building)
        mapstore.write_creator(building)
        jobfiles.layout(building)
        jobfiles.write_function(building, func)
        arg_files: Dict[int, List[str]] = {}  # TransferPaths found in each component's arguments
        with jobfiles.InputWriter(building / "inputs") as writer:
            for args, kwargs in _checked_inputs(iter(pairs)):
                args, kwargs, specs = transfer.extract_transfer_paths(args, kwargs)
                if specs:
                    arg_files[writer.count] = specs
                writer.add(args, kwargs)
        n = writer.count
        if n == 0:
            raise exceptions.EmptyMap("the map has no inputs; give it at least one")
        fixed, per_component = resolve(options, n)
        fixed_files = [transfer.to_spec(p) for p in options.fixed_input_files]
        job_fields = dict(
            job_id=uid, name=tag, num_components=n, fixed=fixed, per_component=per_component,
            custom=dict(options.custom_options), settings=_engine_settings(),
            fixed_input_files=fixed_files,
            input_files=_per_component_files(options.input_files, arg_files, fixed_files, n),
            output_remaps=_per_component_remaps(options.output_remaps, n),
        )
        engine = engines.make_engine(engine_name, job_fields["settings"])
        engine.check(JobSet(directory=final, **job_fields))
        mapstore.write_job(building, job_fields)
        meta = dict(uid=uid, tag=tag, transient=transient, num_components=n, engine=engine_name,
                    created=__import__("time").time(), host=os.uname().nodename, submitted=False,
                    function=getattr(func, "__qualname__", repr(func)))
        mapstore.write_meta(building, meta)
        os.rename(building, final)
        engine.submit(JobSet(directory=final, **job_fields))
        meta["submitted"] = True
        mapstore.write_meta(final, meta)
        published = True
    except OSError as e:
        if e.errno not in store.NO_ROOM_ERRNOS or isinstance(e, exceptions.HTMapException):
            raise
        raise exceptions.NoRoomInStore(
            e.errno, f"no room to write map {tag!r} in {mapstore.maps_dir()}: {e.strerror}; free space there "
                     f"(or raise your quota), or set HTMAP_DIR to a filesystem with room. Nothing of this map was "
                     f"kept and nothing was submitted") from e
    finally:
        if not published:
            store.remove_tree(building)
            store.remove_tree(final)
            mapstore.release_tag(tag, uid)
    m = Map.load(tag)
    if not quiet and _interactive():
        print(f"Created map {tag} with {n} components")
    return m


def _free_random_tag() -> str:
    for _ in range(100):
        tag = tags.random_tag()
        if mapstore.read_tag_file(tag) is None:
            return tag
    raise exceptions.HTMapException("could not find a free random tag; clean up transient maps with htmap.clean()")


def _per_component_files(input_files, arg_files: Dict[int, List[str]], fixed_files: List[str],
                         n: int) -> Optional[List[List[str]]]:
    """Each component's own input files (from map options and TransferPath arguments), or None."""
    if input_files is None and not arg_files:
        transfer.check_name_collisions(fixed_files, 0)
        return None
    out: List[List[str]] = []
    for c in range(n):
        entry = input_files[c] if input_files is not None else []
        entries = entry if isinstance(entry, (list, tuple)) else [entry]
        specs = [transfer.to_spec(p) for p in entries] + arg_files.get(c, [])
        transfer.check_name_collisions(fixed_files + specs, c)
        out.append(specs)
    return out


def _per_component_remaps(remaps, n: int) -> Optional[List[Dict[str, str]]]:
    if remaps is None:
        return None
    if isinstance(remaps, dict):
        one = {str(k): transfer.to_spec(v) for k, v in remaps.items()}
        return [one] * n
    return [{str(k): transfer.to_spec(v) for k, v in r.items()} for r in remaps]
