"""MapOptions: how each component runs. Validated and normalized before submission."""
from __future__ import annotations

import collections
import copy
import difflib
import os
import re
import warnings
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import exceptions

# Keys htmap sets itself; users may not (compared case-insensitively).
RESERVED_KEYS = frozenset(k.lower() for k in (
    "executable", "transfer_executable", "arguments", "universe", "log", "submit_event_notes",
    "submit_event_notes_attrs", "transfer_input_files", "transfer_output_files",
    "transfer_output_remaps", "output", "error", "initialdir", "jobbatchname", "batch_name",
    "should_transfer_files", "when_to_transfer_output", "component", "+component", "my.component",
    "ishtmapjob", "+ishtmapjob", "my.ishtmapjob", "queue", "array", "job_name",
))

SIZE_UNITS = {"": None, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
              "mib": 1024 ** 2, "g": 1024 ** 3, "gb": 1024 ** 3, "gib": 1024 ** 3, "t": 1024 ** 4,
              "tb": 1024 ** 4, "tib": 1024 ** 4}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")
_DURATION_WORDS = {
    "d": 86400, "day": 86400, "days": 86400,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}
_DURATION_PART = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]+)\s*", re.I)
DURATION_FORMS = "seconds (5400), '90s', '1min', '20m', '2h', '1d', '1h30m', '1 hour', '2 days' or '01:30:00'"


def parse_size(value: Any, default_unit: str, key: str) -> int:
    """An HTCondor-style size ("2GB", "512 MB", 1024) as an int of ``default_unit``."""
    unit_bytes = SIZE_UNITS[default_unit.lower()]
    if isinstance(value, bool):
        raise exceptions.InvalidOption(f"{key}={value!r} is not a size; use e.g. '2GB' or '512MB'")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise exceptions.InvalidOption(f"{key}={value!r} must be positive")
        return int(value)
    m = _SIZE.match(str(value))
    if not m or m.group(2).lower() not in SIZE_UNITS:
        raise exceptions.InvalidOption(
            f"{key}={value!r} is not a size htmap understands; use a number with a unit, e.g. "
            f"'2GB', '512MB' or '100KB' (a bare number means {default_unit.upper()})"
        )
    number, unit = float(m.group(1)), m.group(2).lower()
    if number <= 0:
        raise exceptions.InvalidOption(f"{key}={value!r} must be positive")
    factor = SIZE_UNITS[unit] or unit_bytes
    return max(1, int(-(-number * factor // unit_bytes)))


def parse_duration(value: Any, key: str = "max_runtime") -> int:
    """Seconds from 5400, "90s", "1min", "20m", "2h", "1d", "1h30m", "1 hour" or "[D-]HH:MM:SS"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value)
    text = str(value).strip().lower() if isinstance(value, str) else ""
    seconds = _clock_seconds(text) or _unit_seconds(text)
    if seconds:
        return seconds
    raise exceptions.InvalidOption(f"{key}={value!r} is not a duration; use {DURATION_FORMS}")


def _clock_seconds(text: str) -> int:
    """"90", "MM:SS", "HH:MM:SS" or Slurm's "D-HH:MM:SS"; 0 if not one of these."""
    days = 0
    m = re.fullmatch(r"(\d+)-(\d+(?::\d\d){0,2})", text)
    if m:
        days, text = int(m.group(1)), m.group(2)
    if not re.fullmatch(r"\d+(:\d\d){0,2}", text):
        return 0
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return days * 86400 + seconds


def _unit_seconds(text: str) -> int:
    """"1h30m", "90 s", "1 hour", "2 days"; 0 if anything else is in the text."""
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos or m.group(2) not in _DURATION_WORDS:
            return 0
        total += float(m.group(1)) * _DURATION_WORDS[m.group(2)]
        pos = m.end()
    return int(total) if pos == len(text) and text else 0


def _non_negative_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise exceptions.InvalidOption(f"{key}={value!r} must be a whole number, 0 or more")
    return int(value)


def _factor(value: Any, key: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = 0.0
    if isinstance(value, bool) or f < 1:
        raise exceptions.InvalidOption(f"{key}={value!r} must be a number of at least 1 (e.g. 2 doubles the memory)")
    return f


def exception_names(value: Any) -> List[str]:
    """``retry_exceptions``: exception classes or names, as a list of names."""
    if isinstance(value, (str, type)):
        value = [value]
    names = []
    for v in value:
        if isinstance(v, type) and issubclass(v, BaseException):
            names.append(v.__name__)
        elif isinstance(v, str):
            names.extend(n.strip() for n in v.split(",") if n.strip())
        else:
            raise exceptions.InvalidOption(f"retry_exceptions: {v!r} is not an exception class or name")
    return names


# options that are one value for the whole map even when given as a list
WHOLE_MAP_OPTIONS = {"retry_exceptions": exception_names}

NORMALIZERS = {
    "max_retries": lambda v: _non_negative_int(v, "max_retries"),
    "retry_memory_factor": lambda v: _factor(v, "retry_memory_factor"),
    "request_memory": lambda v: parse_size(v, "MB", "request_memory"),
    "request_disk": lambda v: parse_size(v, "KB", "request_disk"),
    "request_cpus": lambda v: _positive_int(v, "request_cpus"),
    "max_runtime": parse_duration,
}


def _positive_int(value: Any, key: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n <= 0 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise exceptions.InvalidOption(f"{key}={value!r} must be a positive whole number")
    return n


# options every engine understands (the local engine understands only these)
PORTABLE_OPTIONS = frozenset(NORMALIZERS) | frozenset(WHOLE_MAP_OPTIONS) | {"request_disk"}


def warn_unknown_options(keys: Iterable[str], known: Iterable[str], engine: str) -> None:
    """A key the engine ignores is most likely a typo: say so, naming the closest known option."""
    known = sorted(known)
    for key in sorted(set(keys) - set(known)):
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; it understands {', '.join(known)}"
        warnings.warn(f"map option {key!r} means nothing to the {engine} engine and is ignored{hint}",
                      UserWarning, stacklevel=4)


def as_map_options(value: Any, what: str = "map_options") -> Optional["MapOptions"]:
    """A MapOptions from a MapOptions, a dict of options, or None."""
    if value is None or isinstance(value, MapOptions):
        return value
    if isinstance(value, Mapping):
        return MapOptions(**{str(k): v for k, v in value.items()})
    raise exceptions.InvalidOption(
        f"{what} must be a htmap.MapOptions (or a dict of options), not {type(value).__name__}; "
        f"e.g. map_options=htmap.MapOptions(request_memory='2GB')"
    )


def _file_entries(value: Any, key: str) -> List[Any]:
    """``fixed_input_files``: one path or a list of them; anything else is refused at once."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)) or not isinstance(value, Iterable):
        value = [value]
    from .transfer import TransferPath

    entries = list(value)
    for entry in entries:
        if not isinstance(entry, (str, os.PathLike, TransferPath)):
            raise exceptions.InvalidOption(
                f"{key} entry {entry!r} is a {type(entry).__name__}, not a path; give paths as str, "
                f"pathlib.Path or htmap.TransferPath (e.g. {key}=['data.csv'])"
            )
    return entries


def normalize_custom_key(key: str) -> str:
    """``foo``, ``+foo`` and ``MY.foo`` all name the job attribute ``foo``."""
    if key.startswith("+"):
        return key[1:]
    if key[:3].lower() == "my.":
        return key[3:]
    return key


def _is_per_component(value: Any) -> bool:
    return isinstance(value, (list, tuple))


class MapOptions(collections.UserDict):
    """Options for a map's components: resources, files, retries, and batch-system options.

    A dict of options. For the keyword options a single value applies to every component, and a
    list or tuple gives one value per component (its length must be the number of components).
    Values are checked when given, so a bad size or duration fails at once. Omitted options (or
    ``None``) are not set. Options given as the ``MAP_OPTIONS`` setting apply to every map; those
    of a mapped function and those of one map are merged (see ``merge``).

    Parameters
    ----------
    fixed_input_files : str, os.PathLike, TransferPath or list of them, optional
        Files sent to every component's working directory: local paths, URLs
        (``root://``, ``https://``, ...) or ``TransferPath`` objects. A directory ending in ``/``
        sends its contents.
    input_files : list, optional
        Files for each component: one entry per component, each a single file or a list of files.
    output_remaps : dict or list of dict, optional
        Where output files go instead of ``Map.output_files``: ``{name in the working directory:
        destination path, URL or TransferPath}``, for all components, or a list with one dict per
        component.
    custom_options : dict, optional
        Custom job attributes. On HTCondor they become ``MY.<key>`` attributes (keys may be
        written ``foo``, ``+foo`` or ``MY.foo``); on Slurm, extra ``#SBATCH --<key>=<value>``
        lines (``{"constraint": "haswell", "exclusive": True}``).
    request_memory : int or str, optional
        Memory per component: MB, or a size such as ``"2GB"`` or ``"512 MB"``. The local engine
        holds a component that uses more; HTCondor and Slurm receive it as their memory request.
    request_disk : int or str, optional
        Disk space per component: KB, or a size such as ``"10GB"``.
    request_cpus : int, optional
        CPU cores per component. On the local engine a component takes that many of the
        ``LOCAL.MAX_WORKERS`` slots.
    max_runtime : int or str, optional
        How long a run may last: seconds, or a duration such as ``"90s"``, ``"20m"``, ``"2h"``,
        ``"1d"`` or ``"01:30:00"``. A component running longer is held (Slurm: its time limit).
    max_retries : int, optional
        How many times a component is started again after hitting its memory or time limit, being
        killed or being evicted (and after raising one of ``retry_exceptions``). Default: never.
    retry_memory_factor : float, optional
        On each retry after running out of memory, multiply ``request_memory`` by this (at least
        1; ``2`` doubles it).
    retry_exceptions : exception class, name, or list of them, optional
        Python exceptions after which a component is also retried (within ``max_retries``), as
        classes (``OSError``) or names (``"OSError"``). One value for the whole map.
    requirements : str, optional
        An HTCondor requirements expression. When options are merged, requirements are ANDed,
        also with the delivery method's and ``HTCONDOR.REQUIREMENTS``.
    max_running : int, optional
        Slurm: at most this many components of each job array run at once (the ``%N`` throttle).
    credentials : str, optional
        HTCondor: ``"kerberos"`` forwards the user's Kerberos credentials to the components
        (also the setting ``HTCONDOR.CREDENTIALS``).
    partition, account, qos : str, optional
        Slurm's partition, account and quality of service (else ``SLURM.PARTITION``,
        ``SLURM.ACCOUNT``, ``SLURM.QOS``).
    **kwargs
        Any other option. The HTCondor engine passes it on as a submit descriptor (``getenv``,
        ``accounting_group``, ``max_idle``, ``docker_image``, ...).

    Raises
    ------
    htmap.exceptions.InvalidOption
        If a value cannot be used (a size, duration or count that is not one).
    htmap.exceptions.ReservedOptionKeyword
        If a key is one htmap sets itself (``executable``, ``arguments``, ``log``, ``output``, ...).

    Examples
    --------
    >>> opts = htmap.MapOptions(
    ...     request_memory="2GB",                      # every component
    ...     max_runtime=["1h", "1h", "4h"],            # one per component
    ...     max_retries=3, retry_memory_factor=2,      # 2GB -> 4GB -> 8GB -> 16GB
    ...     fixed_input_files=["calib.json"],
    ... )
    >>> m = htmap.map(analyse, ["a", "b", "c"], map_options=opts)
    """

    def __init__(
        self,
        *,
        fixed_input_files: Optional[Union[Any, Iterable[Any]]] = None,
        input_files: Optional[Iterable[Any]] = None,
        output_remaps: Optional[Union[Mapping[str, Any], Iterable[Mapping[str, Any]]]] = None,
        custom_options: Optional[Mapping[str, Any]] = None,
        request_memory: Optional[Union[int, str, Sequence[Union[int, str]]]] = None,
        request_disk: Optional[Union[int, str, Sequence[Union[int, str]]]] = None,
        request_cpus: Optional[Union[int, str, Sequence[Union[int, str]]]] = None,
        max_runtime: Optional[Union[int, str, Sequence[Union[int, str]]]] = None,
        max_retries: Optional[Union[int, Sequence[int]]] = None,
        retry_memory_factor: Optional[Union[float, Sequence[float]]] = None,
        retry_exceptions: Optional[Union[str, type, Iterable[Union[str, type]]]] = None,
        requirements: Optional[Union[str, Sequence[str]]] = None,
        max_running: Optional[int] = None,
        credentials: Optional[str] = None,
        partition: Optional[Union[str, Sequence[str]]] = None,
        account: Optional[Union[str, Sequence[str]]] = None,
        qos: Optional[Union[str, Sequence[str]]] = None,
        **kwargs: Any,
    ):
        super().__init__()
        named = dict(request_memory=request_memory, request_disk=request_disk, request_cpus=request_cpus,
                     max_runtime=max_runtime, max_retries=max_retries, retry_memory_factor=retry_memory_factor,
                     retry_exceptions=retry_exceptions, requirements=requirements, max_running=max_running,
                     credentials=credentials, partition=partition, account=account, qos=qos)
        kwargs = {**{k: v for k, v in named.items() if v is not None}, **kwargs}
        self.fixed_input_files: List[Any] = _file_entries(fixed_input_files, "fixed_input_files")
        self.input_files: Optional[List[Any]] = list(input_files) if input_files is not None else None
        self.output_remaps = output_remaps
        self.custom_options: Dict[str, Any] = {}
        for key, value in (custom_options or {}).items():
            name = normalize_custom_key(str(key))
            check_reserved(name)
            self.custom_options[name] = value
        for key, value in kwargs.items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        check_reserved(key)
        if key in WHOLE_MAP_OPTIONS:
            value = WHOLE_MAP_OPTIONS[key](value)
        if key in NORMALIZERS:
            for v in (value if _is_per_component(value) else [value]):
                NORMALIZERS[key](v)  # fail now, with a clear message
        super().__setitem__(key, value)

    def __repr__(self) -> str:
        extra = {k: v for k, v in (("fixed_input_files", self.fixed_input_files), ("input_files", self.input_files),
                                   ("output_remaps", self.output_remaps), ("custom_options", self.custom_options)) if v}
        return f"MapOptions({', '.join(f'{k}={v!r}' for k, v in {**self.data, **extra}.items())})"

    def copy(self) -> "MapOptions":
        """A deep copy of the options.

        Returns
        -------
        MapOptions
            The copy; changing it leaves these options as they are.
        """
        return copy.deepcopy(self)

    @classmethod
    def merge(cls, base: Optional["MapOptions"], override: Optional["MapOptions"]) -> "MapOptions":
        """Merge two sets of options; ``override`` wins. Neither is changed.

        Keyword options of ``override`` replace those of ``base``, except ``requirements``, which
        are ANDed. ``fixed_input_files`` are concatenated; ``input_files`` and ``output_remaps`` of
        ``override`` replace those of ``base`` if given; ``custom_options`` are merged key by key.

        Parameters
        ----------
        base : MapOptions or None
            The options to start from (for example, those of a mapped function).
        override : MapOptions or None
            The options that take precedence (for example, those given to one map).
            Either may also be a dict of options.

        Returns
        -------
        MapOptions
            The merged options.
        """
        base, override = as_map_options(base), as_map_options(override)
        base = base.copy() if base is not None else cls()
        if override is None:
            return base
        override = override.copy()
        merged = cls()
        merged.data = {**base.data, **override.data}
        if "requirements" in base.data and "requirements" in override.data:
            merged.data["requirements"] = and_requirements(base.data["requirements"], override.data["requirements"])
        merged.fixed_input_files = base.fixed_input_files + override.fixed_input_files
        merged.input_files = override.input_files if override.input_files is not None else base.input_files
        merged.output_remaps = override.output_remaps if override.output_remaps is not None else base.output_remaps
        merged.custom_options = {**base.custom_options, **override.custom_options}
        return merged


def and_requirements(*exprs: Any) -> Any:
    """AND several requirement expressions (per-component lists element-wise)."""
    exprs = [e for e in exprs if e not in (None, "")]
    if not exprs:
        return ""
    if any(_is_per_component(e) for e in exprs):
        length = max(len(e) for e in exprs if _is_per_component(e))
        columns = [list(e) if _is_per_component(e) else [e] * length for e in exprs]
        return [and_requirements(*row) for row in zip(*columns)]
    if len(exprs) == 1:
        return exprs[0]
    return " && ".join(f"({e})" for e in exprs)


def check_reserved(key: str) -> None:
    if key.lower() in RESERVED_KEYS or normalize_custom_key(key).lower() in RESERVED_KEYS:
        raise exceptions.ReservedOptionKeyword(
            f"{key!r} is set by htmap itself and cannot be a map option; remove it from your MapOptions"
        )


def resolve(options: MapOptions, num_components: int) -> Tuple[Dict[str, Any], Dict[str, List[Any]]]:
    """Split into fixed and per-component values, normalizing resource keys."""
    fixed: Dict[str, Any] = {}
    per: Dict[str, List[Any]] = {}
    for key, value in options.data.items():
        norm = NORMALIZERS.get(key, lambda v: v)
        if key in WHOLE_MAP_OPTIONS:
            fixed[key] = WHOLE_MAP_OPTIONS[key](value)
        elif _is_per_component(value):
            if len(value) != num_components:
                raise exceptions.MisalignedInputData(
                    f"map option {key!r} has {len(value)} values but the map has {num_components} components; "
                    "give one value per component, or a single string for all"
                )
            per[key] = [norm(v) for v in value]
        else:
            fixed[key] = norm(value)
    for name, value in (("input_files", options.input_files), ("output_remaps", options.output_remaps)):
        if _is_per_component(value) and len(value) != num_components:
            raise exceptions.MisalignedInputData(
                f"map option {name!r} has {len(value)} entries but the map has {num_components} components"
            )
    return fixed, per
