"""Layered settings: runtime > ~/.htmaprc (TOML) > environment > defaults.

Keys are dotted paths into nested tables (``settings["LOCAL.MAX_WORKERS"]``).
"""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from . import exceptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from . import store

def absolute_dir(value: Any) -> str:
    """HTMAP_DIR as an absolute path, fixed when it is read: the supervisor runs in ``/``, and a
    later ``chdir`` must not move the maps."""
    return os.path.abspath(os.path.expanduser(str(value)))


BASE_SETTINGS: Dict[str, Any] = {
    # as in HTMap 0.6, $HTMAP_DIR at import is the default: settings.replace(BASE_SETTINGS) keeps it
    "HTMAP_DIR": absolute_dir(os.environ.get("HTMAP_DIR") or Path.home() / ".htmap"),
    "ENGINE": "auto",
    "DELIVERY_METHOD": "assume",
    "SITE": "",
    "WAIT_TIME": 1,
    "MAX_COMPONENTS": 10_000_000,  # a map stops with an error past this many inputs (an endless iterator)
    "CLI": {"IS_CLI": False},
    "LOCAL": {"MAX_WORKERS": 0, "IDLE_EXIT_SECONDS": 10},
    "MAP_OPTIONS": {},
    "HTCONDOR": {"SCHEDULER": "", "COLLECTOR": "", "CREDENTIALS": "", "REQUIREMENTS": ""},
    "SLURM": {"PARTITION": "", "ACCOUNT": "", "QOS": ""},
    "DOCKER": {"IMAGE": "python:3"},
    "SINGULARITY": {"IMAGE": "docker://python:3"},
    "TRANSPLANT": {"DIR": "", "ALTERNATE_INPUT_PATH": "", "ASSUME_EXISTS": False},
}

ENV_PREFIX = "HTMAP_"


def rc_path() -> Path:
    """Where the user's settings file lives (``HTMAPRC`` overrides ``~/.htmaprc``)."""
    return Path(os.environ.get("HTMAPRC", Path.home() / ".htmaprc"))


def parse_scalar(text: str) -> Any:
    """Read a string from the shell or environment as bool, int, float or str."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def settings_from_env(environ: Mapping[str, str]) -> Dict[str, Any]:
    """``HTMAP_X=v`` sets ``X``; ``HTMAP_A__B=v`` sets ``A.B``."""
    out: Dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ("HTMAP_ON_EXECUTE", "HTMAP_COMPONENT"):
            continue
        key = name[len(ENV_PREFIX):]
        if key == "DIR":
            key = "HTMAP_DIR"
        _set_dotted(out, key.replace("__", "."), absolute_dir(value) if key == "HTMAP_DIR" else parse_scalar(value))
    return out


def _set_dotted(d: Dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[last] = value


def _get_dotted(d: Mapping[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(d, Mapping) or part not in d:
            raise KeyError(key)
        d = d[part]
    return d


def _merge(base: Dict[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


class Settings:
    """htmap's settings: a stack of nested dicts (layers); a key is looked up in each in turn.

    ``htmap.settings`` is the one htmap uses. Keys are dotted paths into the nested dicts
    (``settings["HTCONDOR.SCHEDD"]``); assignment writes to the first layer. The layers of
    ``htmap.settings`` are, from first to last: changes made at runtime, ``~/.htmaprc``,
    ``HTMAP_*`` environment variables, and htmap's defaults.

    Parameters
    ----------
    *layers : dict
        The layers, highest precedence first. Without any, one empty layer.
    file_error : str, optional
        Why the settings file could not be read. If given, reading any setting raises
        ``htmap.exceptions.SettingsFileError`` with it (``import htmap`` still works).

    Attributes
    ----------
    maps : list of dict
        The layers.
    file_error : str or None
        Why the settings file could not be read, or ``None``.
    """

    def __init__(self, *layers: Dict[str, Any], file_error: Optional[str] = None):
        self.maps: List[Dict[str, Any]] = list(layers) or [{}]
        # the settings file could not be read: every read of a setting says so (a value taken from the
        # other layers might not be what the user set, e.g. HTMAP_DIR), but importing htmap works
        self.file_error = file_error

    def __getitem__(self, key: str) -> Any:
        if self.file_error is not None:
            raise exceptions.SettingsFileError(self.file_error)
        for layer in self.maps:
            try:
                value = _get_dotted(layer, key)
            except KeyError:
                continue
            if isinstance(value, Mapping):
                return _get_dotted(self.to_dict(), key)
            return value
        raise exceptions.MissingSetting(
            f"no value for setting {key!r}; set it with htmap.settings[{key!r}] = ... "
            f"or in {rc_path()}"
        )

    def get(self, key: str, default: Any = None) -> Any:
        """The value of a setting, or a default if it has none.

        Parameters
        ----------
        key : str
            The setting's dotted name, e.g. ``"LOCAL.MAX_WORKERS"``.
        default : object, optional
            What to return if the setting has no value. Default ``None``.

        Returns
        -------
        object
            The value; a dict (all layers merged) for a key naming a group of settings.
        """
        try:
            return self[key]
        except exceptions.MissingSetting:
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "HTMAP_DIR" and value:
            value = absolute_dir(value)
        _set_dotted(self.maps[0], key, value)

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def to_dict(self) -> Dict[str, Any]:
        """All layers merged into one nested dict.

        Returns
        -------
        dict
            The merged settings (a new dict; changing it changes nothing).
        """
        out: Dict[str, Any] = {}
        for layer in reversed(self.maps):
            _merge(out, layer)
        return out

    def replace(self, other: Union["Settings", Dict[str, Any]]) -> None:
        """Replace all layers with copies of another settings object's layers.

        Later changes to these settings leave ``other`` as it was.

        Parameters
        ----------
        other : Settings or dict
            The layers to add: a ``Settings`` object's layers, or one nested dict.
        """
        layers = other.maps if isinstance(other, Settings) else [other]
        self.maps = [copy.deepcopy(layer) for layer in layers]
        self.file_error = other.file_error if isinstance(other, Settings) else None

    def append(self, other: Union["Settings", Dict[str, Any]]) -> None:
        """Add layers below the existing ones (lowest precedence).

        Parameters
        ----------
        other : Settings or dict
            The layers to add: a ``Settings`` object's layers, or one nested dict.
        """
        self.maps.extend(other.maps if isinstance(other, Settings) else [other])

    def prepend(self, other: Union["Settings", Dict[str, Any]]) -> None:
        """Add layers above the existing ones (highest precedence).

        Parameters
        ----------
        other : Settings or dict
            The layers to add: a ``Settings`` object's layers, or one nested dict.
        """
        self.maps[:0] = other.maps if isinstance(other, Settings) else [other]

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Settings":
        """Read settings from a TOML file, as one layer.

        Parameters
        ----------
        path : str or pathlib.Path
            The TOML file.

        Returns
        -------
        Settings
            Settings with the file's contents as their only layer.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        """
        with open(path, "rb") as f:
            return cls(tomllib.load(f))

    def save(self, path: Union[str, Path, None] = None, *, layer: int = 0) -> Path:
        """Write one layer as a TOML file, atomically.

        Parameters
        ----------
        path : str or pathlib.Path, optional
            The file. Default ``~/.htmaprc`` (or what ``HTMAPRC`` names).
        layer : int, optional
            Which layer to write. Default 0, the changes made at runtime.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        path = Path(path) if path is not None else rc_path()
        store.write_text_atomic(path, to_toml(self.maps[layer]))
        if path == rc_path():
            self.file_error = None  # the broken file was just replaced
        return path

    def __repr__(self) -> str:
        return f"<Settings {self.to_dict()!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self.to_dict() == other.to_dict()


_MISSING = object()


def _plain(value: Any) -> Any:
    """What TOML can hold: paths as strings, tuples as lists, tables as dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or not isinstance(value, (str, int, float, bool)):
        raise exceptions.HTMapException(f"cannot write {value!r} ({type(value).__name__}) to the settings file; "
                                        "settings hold strings, numbers, booleans, lists and tables")
    return value


def to_toml(d: Mapping[str, Any]) -> str:
    """Settings as TOML (tomli-w: any string, also with control characters, reads back the same)."""
    return tomli_w.dumps(_plain(d))


def _load_rc() -> Dict[str, Any]:
    path = rc_path()
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise exceptions.SettingsFileError(f"the settings file {path} is not valid TOML ({e}); fix it, or "
                                           f"remove it (htmap then uses its defaults)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise exceptions.SettingsFileError(f"the settings file {path} cannot be read ({e}); fix its "
                                           "permissions, or remove it") from None


def _rc_or_error() -> Tuple[Dict[str, Any], Optional[str]]:
    try:
        return _load_rc(), None
    except exceptions.SettingsFileError as e:
        return {}, str(e)


def user_settings() -> Settings:
    """Only what the settings file (``~/.htmaprc``) says."""
    rc, error = _rc_or_error()
    return Settings(rc, file_error=error)


def build_settings() -> Settings:
    rc, error = _rc_or_error()
    return Settings({}, rc, settings_from_env(os.environ), copy.deepcopy(BASE_SETTINGS), file_error=error)


settings = build_settings()


def htmap_dir() -> Path:
    return Path(absolute_dir(settings["HTMAP_DIR"]))


def reset_for_tests() -> None:
    """Re-read rc file and environment into the existing ``settings`` object (tests, fresh shells)."""
    settings.replace(build_settings())
