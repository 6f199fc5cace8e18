"""Creating maps: map, starmap, build_map and the @mapped decorator."""
from __future__ import annotations

import functools
import itertools
import os
import sys
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from . import delivery, engines, exceptions, jobfiles, layout, mapstore, store, tags, transfer
from .engines import JobSet
from .maps import Map
from .options import MapOptions, resolve
from .settings import settings


def map(func: Callable, args: Iterable[Any], map_options: Optional[MapOptions] = None,
        tag: Optional[str] = None, quiet: bool = False) -> Map:
    """Map a function over an iterable: one component per element, each run as ``func(arg)``.

    Parameters
    ----------
    func : callable
        The function to run. It is serialized with cloudpickle, so it may be a lambda or a
        function defined in a notebook.
    args : iterable
        The inputs, one per component.
    map_options : MapOptions, optional
        How the components run: resources, input files, retries, engine-specific options.
    tag : str, optional
        The map's name. Without one, a random tag is chosen and the map is *transient*:
        ``htmap.clean()`` removes it.
    quiet : bool, optional
        Do not say "Created map ... on the ... engine" (stdout in a terminal or
        notebook, else stderr). Default ``False``.

    Returns
    -------
    Map
        The new map; its components are already submitted.

    Raises
    ------
    htmap.exceptions.EmptyMap
        If there are no inputs.
    htmap.exceptions.InvalidTag
        If ``tag`` is not a valid tag.
    htmap.exceptions.TagAlreadyExists
        If a map with ``tag`` exists already.
    htmap.exceptions.CannotPickle
        If the function or an input cannot be serialized.
    htmap.exceptions.InvalidOption
        If a map option has a value htmap cannot use.
    htmap.exceptions.MisalignedInputData
        If a per-component option does not have one value per component.

    Examples
    --------
    >>> m = htmap.map(lambda x: 2 * x, range(10), tag="doubles")
    >>> list(m)
    [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    """
    return create_map(func, ((( a,), {}) for a in args), map_options=map_options, tag=tag, quiet=quiet)


def starmap(func: Callable, args: Optional[Iterable[Tuple]] = None, kwargs: Optional[Iterable[Dict[str, Any]]] = None,
            map_options: Optional[MapOptions] = None, tag: Optional[str] = None, quiet: bool = False) -> Map:
    """Map a function over positional and keyword arguments: one component per ``(args, kwargs)``.

    ``args`` and ``kwargs`` are zipped, the shorter one padded: a component whose positional
    arguments are missing gets ``()``, one whose keyword arguments are missing gets ``{}``.

    Parameters
    ----------
    func : callable
        The function to run, called as ``func(*a, **k)`` for each component.
    args : iterable of tuple, optional
        Positional arguments, one tuple per component.
    kwargs : iterable of dict, optional
        Keyword arguments, one dict per component.
    map_options : MapOptions, optional
        How the components run: resources, input files, retries, engine-specific options.
    tag : str, optional
        The map's name. Without one, a random tag is chosen and the map is *transient*:
        ``htmap.clean()`` removes it.
    quiet : bool, optional
        Do not say "Created map ... on the ... engine" (stdout in a terminal or
        notebook, else stderr). Default ``False``.

    Returns
    -------
    Map
        The new map; its components are already submitted.

    Raises
    ------
    htmap.exceptions.EmptyMap
        If there are no inputs.
    htmap.exceptions.InvalidTag
        If ``tag`` is not a valid tag.
    htmap.exceptions.TagAlreadyExists
        If a map with ``tag`` exists already.
    htmap.exceptions.CannotPickle
        If the function or an input cannot be serialized.
    htmap.exceptions.InvalidOption
        If a map option has a value htmap cannot use.
    htmap.exceptions.MisalignedInputData
        If a per-component option does not have one value per component.

    Examples
    --------
    >>> m = htmap.starmap(pow, args=[(2, 3), (3, 2)], kwargs=[{}, {"mod": 5}])
    >>> list(m)
    [8, 4]
    """
    if args is None:
        args = ()
    if kwargs is None:
        kwargs = ()
    pairs = ((tuple(a) if a is not None else (), dict(k) if k is not None else {})
             for a, k in itertools.zip_longest(args, kwargs, fillvalue=None))
    return create_map(func, pairs, map_options=map_options, tag=tag, quiet=quiet)


class MapBuilder:
    """Build a map call by call inside a ``with`` block; the map is submitted when the block ends.

    Calling the builder records one component with the arguments given. If the block raises,
    nothing is submitted. Usually made by ``htmap.build_map``.

    Parameters
    ----------
    func : callable
        The function to run for each recorded call.
    map_options : MapOptions, optional
        How the components run: resources, input files, retries, engine-specific options.
    tag : str, optional
        The map's name. Without one, a random tag is chosen and the map is *transient*:
        ``htmap.clean()`` removes it.
    quiet : bool, optional
        Do not say "Created map ... on the ... engine" (stdout in a terminal or
        notebook, else stderr). Default ``False``.

    Examples
    --------
    >>> with htmap.build_map(double, tag="doubles") as builder:
    ...     for x in range(10):
    ...         builder(x)
    >>> m = builder.map
    """

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
        """The map, once the ``with`` block has ended; ``htmap.exceptions.NoMapYet`` inside the block."""
        if self._map is None:
            raise exceptions.NoMapYet("the map is created when the with-block ends; use .map after it")
        return self._map


def build_map(func: Callable, map_options: Optional[MapOptions] = None, tag: Optional[str] = None,
              quiet: bool = False) -> MapBuilder:
    """A ``MapBuilder`` for ``func``: record calls inside a ``with`` block, submitted as one map at its end.

    Parameters
    ----------
    func : callable
        The function to run for each recorded call.
    map_options : MapOptions, optional
        How the components run: resources, input files, retries, engine-specific options.
    tag : str, optional
        The map's name. Without one, a random tag is chosen and the map is *transient*:
        ``htmap.clean()`` removes it.
    quiet : bool, optional
        Do not say "Created map ... on the ... engine" (stdout in a terminal or
        notebook, else stderr). Default ``False``.

    Returns
    -------
    MapBuilder
        Use it as a context manager; call it once per component.
    """
    return MapBuilder(func, map_options=map_options, tag=tag, quiet=quiet)


class MappedFunction:
    """A function that can be mapped: it has ``map``, ``starmap`` and ``build_map`` methods and
    still works as a plain function when called. Made by the ``htmap.mapped`` decorator.

    Parameters
    ----------
    func : callable
        The function.
    map_options : MapOptions, optional
        Options used by every map of this function; options given to a single map are merged
        over them (see ``MapOptions.merge``).
    """

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
        """Map the function over an iterable, as ``htmap.map`` does.

        Parameters
        ----------
        args : iterable
            The inputs, one per component.
        tag : str, optional
            The map's name. Without one, a random tag is chosen and the map is *transient*:
            ``htmap.clean()`` removes it.
        map_options : MapOptions, optional
            Options for this map, merged over the function's own.
        quiet : bool, optional
            Do not say "Created map ... on the ... engine" (stdout in a terminal or
            notebook, else stderr). Default ``False``.

        Returns
        -------
        Map
            The new map.
        """
        return map(self.func, args, map_options=self._options(map_options), tag=tag, quiet=quiet)

    def starmap(self, args=None, kwargs=None, tag: Optional[str] = None, map_options: Optional[MapOptions] = None,
                quiet: bool = False) -> Map:
        """Map the function over positional and keyword arguments, as ``htmap.starmap`` does.

        Parameters
        ----------
        args : iterable of tuple, optional
            Positional arguments, one tuple per component.
        kwargs : iterable of dict, optional
            Keyword arguments, one dict per component.
        tag : str, optional
            The map's name. Without one, a random tag is chosen and the map is *transient*:
            ``htmap.clean()`` removes it.
        map_options : MapOptions, optional
            Options for this map, merged over the function's own.
        quiet : bool, optional
            Do not say "Created map ... on the ... engine" (stdout in a terminal or
            notebook, else stderr). Default ``False``.

        Returns
        -------
        Map
            The new map.
        """
        return starmap(self.func, args, kwargs, map_options=self._options(map_options), tag=tag, quiet=quiet)

    def build_map(self, tag: Optional[str] = None, map_options: Optional[MapOptions] = None,
                  quiet: bool = False) -> MapBuilder:
        """A ``MapBuilder`` for the function, as ``htmap.build_map`` gives.

        Parameters
        ----------
        tag : str, optional
            The map's name. Without one, a random tag is chosen and the map is *transient*:
            ``htmap.clean()`` removes it.
        map_options : MapOptions, optional
            Options for this map, merged over the function's own.
        quiet : bool, optional
            Do not say "Created map ... on the ... engine" (stdout in a terminal or
            notebook, else stderr). Default ``False``.

        Returns
        -------
        MapBuilder
            Use it as a context manager; call it once per component.
        """
        return build_map(self.func, map_options=self._options(map_options), tag=tag, quiet=quiet)


def mapped(func: Optional[Callable] = None, *, map_options: Optional[MapOptions] = None):
    """Decorator that makes a function a ``MappedFunction``.

    Use it bare (``@htmap.mapped``) or with options
    (``@htmap.mapped(map_options=htmap.MapOptions(request_memory="2GB"))``).

    Parameters
    ----------
    func : callable, optional
        The function, when used bare.
    map_options : MapOptions, optional
        Options used by every map of the function.

    Returns
    -------
    MappedFunction or callable
        The mapped function; or, when called without ``func``, a decorator that makes one.

    Examples
    --------
    >>> @htmap.mapped(map_options=htmap.MapOptions(request_memory="2GB"))
    ... def double(x):
    ...     return 2 * x
    >>> double(4)
    8
    >>> m = double.map(range(10))
    """
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


class _UserIteratorError(Exception):
    """Carries the caller's own exception out of the map's creation, past htmap's handlers."""

    def __init__(self, error: BaseException):
        super().__init__(error)
        self.error = error


def _checked_inputs(pairs: Iterator[Tuple[Tuple, Dict[str, Any]]]) -> Iterator[Tuple[Tuple, Dict[str, Any]]]:
    """Let an exception from the caller's iterator through as itself (as HTMap 0.6 did), with a note;
    stop an endless one at MAX_COMPONENTS."""
    count = 0
    limit = _max_components()
    while True:
        try:
            pair = next(pairs)
        except StopIteration:
            return
        except Exception as e:
            note = (f"htmap: the input iterator raised this after {count} inputs; nothing of the map was "
                    "kept and nothing was submitted")
            if hasattr(e, "add_note"):  # Python >= 3.11
                e.add_note(note)
            raise _UserIteratorError(e) from None
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
    engine_name, engine_why = engines.resolve_name(str(settings["ENGINE"]))
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
            layout=layout.CURRENT,
        )
        layout.Layout(building).make_dirs(range(n))
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
    except _UserIteratorError as e:
        raise e.error from e.error.__cause__
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
    if not quiet:
        _say_created(tag, n, engine_name, engine_why)
    return m


def _say_created(tag: str, n: int, engine_name: str, why: str) -> None:
    """Every new map says where it went (stdout in a terminal or notebook, else stderr, so that a
    script's own output stays clean); ``quiet=True`` silences it."""
    print(f"Created map {tag} with {n} component{'s' if n != 1 else ''} on the {engine_name} engine ({why})",
          file=sys.stdout if _interactive() else sys.stderr)


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
