"""Delivery methods: how Python reaches an execute node (engines give them meaning).

Built in: ``assume``, ``shared``, ``docker``, ``singularity``, ``transplant`` (see
``htmap.engines.htcondor.delivery`` for what each writes). Users add their own with
``register_delivery_method``, which accepts HTMap 0.6's signature::

    register_delivery_method(name, options_func, setup_func=None)

``options_func(tag, map_dir) -> dict`` returns submit descriptors merged over htmap's
own (so a method may set ``executable``, ``transfer_input_files``, ``container_image``...);
``setup_func(tag, map_dir)``, if given, runs once per submission before the map is
submitted. ``register_delivery_method(name)`` alone just makes ``name`` a valid
``DELIVERY_METHOD`` (for engines that need nothing more).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

from . import exceptions

BUILTIN_DELIVERY_METHODS = ("assume", "shared", "docker", "singularity", "transplant")


@dataclass(frozen=True)
class DeliveryMethod:
    name: str
    options_func: Optional[Callable] = None
    setup_func: Optional[Callable] = None

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_DELIVERY_METHODS and self.options_func is None


REGISTERED: Dict[str, DeliveryMethod] = {name: DeliveryMethod(name) for name in BUILTIN_DELIVERY_METHODS}


def register_delivery_method(name: str, descriptors_func: Optional[Callable] = None,
                             setup_func: Optional[Callable] = None) -> None:
    """Register a delivery method: a way for Python and htmap to reach the execute node.

    After this, ``name`` is a valid value of the ``DELIVERY_METHOD`` setting. The signature is
    HTMap 0.6's; both functions are optional.

    Parameters
    ----------
    name : str
        The method's name.
    descriptors_func : callable, optional
        ``descriptors_func(tag, map_dir) -> dict``: submit descriptors merged over htmap's own for
        each map submitted with this method (it may set ``executable``,
        ``transfer_input_files``, ``container_image``, ...).
    setup_func : callable, optional
        ``setup_func(tag, map_dir)``: run once for each map, before it is submitted.

    Raises
    ------
    htmap.exceptions.UnknownPythonDeliveryMethod
        If ``name`` is not a non-empty string.
    TypeError
        If ``descriptors_func`` or ``setup_func`` is given but not callable.
    """
    if not isinstance(name, str) or not name:
        raise exceptions.UnknownPythonDeliveryMethod(f"a delivery method needs a non-empty name, not {name!r}")
    for label, func in (("descriptors_func", descriptors_func), ("setup_func", setup_func)):
        if func is not None and not callable(func):
            raise TypeError(f"{label} of delivery method {name!r} must be callable, not {type(func).__name__}")
    REGISTERED[name] = DeliveryMethod(name, descriptors_func, setup_func)


def get_delivery_method(name: str) -> DeliveryMethod:
    check_delivery_method(name)
    return REGISTERED[name]


def check_delivery_method(name: str) -> str:
    if name not in REGISTERED:
        raise exceptions.UnknownPythonDeliveryMethod(
            f"unknown delivery method {name!r}; use one of {', '.join(sorted(REGISTERED))}, "
            "or register yours with htmap.register_delivery_method"
        )
    return name
