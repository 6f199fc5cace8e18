"""htmap: map Python functions onto HTCondor, Slurm, or this machine, as persistent named maps."""
from . import exceptions
from .delivery import register_delivery_method
from .errors import ComponentError, ComponentHold
from .management import clean, get_tags, load, load_maps, remove, status, status_csv, status_json
from .mapping import MapBuilder, MappedFunction, build_map, map, mapped, starmap
from .maps import Map
from .options import MapOptions
from .settings import BASE_SETTINGS, Settings, settings
from .execution import checkpoint, transfer_output_files
from .state import ComponentStatus
from .transfer import TransferPath

__version__ = "0.7.0.dev0"
version = __version__

__all__ = [
    "BASE_SETTINGS", "ComponentError", "ComponentHold", "ComponentStatus", "Map", "MapBuilder",
    "MapOptions", "MappedFunction", "Settings", "build_map", "clean", "exceptions", "get_tags", "load",
    "load_maps", "map", "mapped", "register_delivery_method", "remove", "settings", "starmap", "status",
    "status_csv", "status_json", "version", "TransferPath", "checkpoint", "transfer_output_files",
]
