"""Engine registry: names to classes, imported lazily so htmap never needs their deps."""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Optional, Tuple, Type

from .. import exceptions
from .base import Action, ComponentEvent, Engine, EventKind, JobSet

ENGINES: Dict[str, str] = {
    "local": "htmap.engines.local.engine:LocalEngine",
    "htcondor": "htmap.engines.htcondor.engine:HTCondorEngine",
    "slurm": "htmap.engines.slurm.engine:SlurmEngine",
}

AUTO_ORDER = ("htcondor", "slurm", "local")


def engine_class(name: str) -> Type[Engine]:
    try:
        target = ENGINES[name]
    except KeyError:
        raise exceptions.UnknownEngine(
            f"unknown engine {name!r}; choose one of: auto, {', '.join(ENGINES)}"
        ) from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def probe(names=AUTO_ORDER) -> List[Tuple[str, bool, str]]:
    """(name, available, why) for each engine, in auto's order of preference."""
    out = []
    for name in names:
        try:
            ok, why = engine_class(name).available()
        except ImportError as e:
            ok, why = False, f"not installed ({e})"
        out.append((name, ok, why))
    return out


def resolve_name(name: str) -> Tuple[str, str]:
    """The engine a setting of ``name`` means here, and why.

    ``auto`` takes the first usable engine of ``AUTO_ORDER``; it chooses local only where no
    cluster is installed, and raises ``EngineUnavailable`` (with the reasons and both fixes)
    where one is installed but cannot be used."""
    if name != "auto":
        engine_class(name)  # validates the name
        return name, f"ENGINE is set to {name!r}"
    unusable = []
    for engine, ok, why in probe(AUTO_ORDER[:-1]):
        if ok:
            return engine, f"auto: {why}" if why else f"auto: {engine} is available"
        found = _installed(engine)
        if found:
            unusable.append(f"{engine} is installed here ({found}) but cannot be used: {why}")
    if unusable:
        raise exceptions.EngineUnavailable(
            "ENGINE is 'auto' and a cluster is installed here, but " + "; and ".join(unusable)
            + ". htmap does not run a cluster's work on this machine without being told to. Either make the "
            "cluster usable (for HTCondor: install the bindings with " + _htcondor_install_hint()
            + " and check that condor_q answers), or choose an engine explicitly: "
            "htmap.settings['ENGINE'] = 'local' (or 'htmap set ENGINE local') to run on this machine")
    return "local", "auto: no cluster is installed here"


def _installed(name: str) -> str:
    try:
        return engine_class(name).installed()
    except ImportError:
        return ""


def _htcondor_install_hint() -> str:
    from .htcondor.bindings import INSTALL_HINT

    return INSTALL_HINT


def make_engine(name: str, settings: Optional[Dict[str, Any]] = None) -> Engine:
    return engine_class(name)(settings)


__all__ = ["Action", "ComponentEvent", "Engine", "EventKind", "JobSet", "engine_class", "make_engine",
           "probe", "resolve_name", "ENGINES"]
