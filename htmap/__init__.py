"""htmap: map Python functions onto HTCondor, Slurm, or this machine, as persistent named maps."""
import copy
import re
from typing import Tuple

from . import exceptions
from .delivery import register_delivery_method
from .errors import ComponentError, ComponentHold
from .management import clean, get_tags, load, load_maps, remove, status, status_csv, status_json
from .mapping import MapBuilder, MappedFunction, build_map, map, mapped, starmap
from .maps import Map, MapOutputFiles, MapStdErr, MapStdOut
from .options import MapOptions
from . import settings as _settings_module
from .settings import Settings, settings
from .execution import checkpoint, transfer_output_files
from .state import ComponentStatus
from .transfer import TransferPath
from .transplants import Transplant, transplant_info, transplants

__version__ = "0.7.0.dev0"

BASE_SETTINGS = Settings(copy.deepcopy(_settings_module.BASE_SETTINGS))  # htmap's defaults
USER_SETTINGS = _settings_module.user_settings()  # what ~/.htmaprc said when htmap was imported


def version() -> str:
    """A human-readable version string, as HTMap 0.6 gave it.

    Returns
    -------
    str
        For example ``"htmap version 0.7.0.dev0"``.
    """
    return f"htmap version {__version__}"


def version_info() -> Tuple[int, int, int, str]:
    """The version as a tuple.

    Returns
    -------
    tuple of (int, int, int, str)
        ``(major, minor, micro, release_level)``, e.g. ``(0, 7, 0, "dev0")``.
    """
    match = re.match(r"(\d+)\.(\d+)\.(\d+)\.?(.*)", __version__)
    major, minor, micro, level = match.groups()
    return int(major), int(minor), int(micro), level


__all__ = [
    "BASE_SETTINGS", "ComponentError", "ComponentHold", "ComponentStatus", "Map", "MapBuilder",
    "MapOptions", "MappedFunction", "Settings", "build_map", "clean", "exceptions", "get_tags", "load",
    "load_maps", "map", "mapped", "register_delivery_method", "remove", "settings", "starmap", "status",
    "status_csv", "status_json", "version", "TransferPath", "checkpoint", "transfer_output_files",
    "USER_SETTINGS", "version_info", "Transplant", "transplants", "transplant_info",
    "MapStdOut", "MapStdErr", "MapOutputFiles",
]
