"""Names of the ways Python reaches an execute node (engines give them meaning)."""
from __future__ import annotations

from typing import Callable, Dict, Optional

from . import exceptions

BUILTIN_DELIVERY_METHODS = ("assume", "shared", "docker", "singularity", "transplant")
REGISTERED: Dict[str, Optional[Callable]] = {name: None for name in BUILTIN_DELIVERY_METHODS}


def register_delivery_method(name: str, setup: Optional[Callable] = None) -> None:
    """Make ``name`` a valid DELIVERY_METHOD; ``setup`` is for engines that use it (HTCondor)."""
    REGISTERED[name] = setup


def check_delivery_method(name: str) -> str:
    if name not in REGISTERED:
        raise exceptions.UnknownPythonDeliveryMethod(
            f"unknown delivery method {name!r}; use one of {', '.join(sorted(REGISTERED))}, "
            "or register yours with htmap.register_delivery_method"
        )
    return name
