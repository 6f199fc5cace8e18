"""Shared fixtures of the HTCondor engine tests: job sets on disk, a recording scheduler."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from htmap import jobfiles, store
from htmap.engines.base import JobSet
from htmap.layout import CURRENT, Layout
from htmap.settings import BASE_SETTINGS

# A copy of ../shared/fixtures/htcondor (recorded on a real HTCondor 25 pool), kept in the repo so
# the tests run on a clean checkout anywhere.
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def double(x):
    return 2 * x


import sys as _sys

import cloudpickle as _cloudpickle

_cloudpickle.register_pickle_by_value(_sys.modules[__name__])


class RecordingScheduler:
    """A ``Scheduler`` that records every call (and hands out cluster ids 100, 101, ...)."""

    def __init__(self, kerberos_error: Optional[Exception] = None):
        self.calls: List[Tuple[str, Any]] = []
        self.next_cluster = 100
        self.kerberos_error = kerberos_error

    def submit(self, description: Dict[str, str], itemdata: List[Dict[str, str]]) -> int:
        self.calls.append(("submit", (dict(description), [dict(i) for i in itemdata])))
        self.next_cluster += 1
        return self.next_cluster - 1

    def act(self, action: str, constraint: str, reason=None) -> None:
        self.calls.append(("act", (action, constraint, reason)))

    def edit(self, constraint: str, attr: str, value: str) -> None:
        self.calls.append(("edit", (constraint, attr, value)))

    def add_kerberos_credential(self) -> None:
        self.calls.append(("kerberos", None))
        if self.kerberos_error is not None:
            raise self.kerberos_error


def settings_with(htmap_dir: Path, **overrides: Any) -> Dict[str, Any]:
    s = copy.deepcopy(BASE_SETTINGS)
    s["HTMAP_DIR"] = str(htmap_dir)
    for dotted, value in overrides.items():
        d = s
        *parents, last = dotted.split("__")
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = value
    return s


@pytest.fixture
def make_job(tmp_path):
    """make_job(inputs, **JobSet fields) -> a JobSet whose directory holds func and inputs."""
    counter = [0]

    def make(inputs=(1, 2, 3), *, func=double, settings=None, name="mymap", **fields) -> JobSet:
        counter[0] += 1
        directory = tmp_path / "htmap" / "maps" / f"uid{counter[0]}"
        store.make_dir(directory)
        jobfiles.layout(directory)
        Layout(directory, fields.get("layout", CURRENT)).make_dirs(range(len(inputs)))
        jobfiles.write_function(directory, func)
        with jobfiles.InputWriter(directory / "inputs") as writer:
            for x in inputs:
                writer.add((x,), {})
        return JobSet(job_id=f"uid{counter[0]}", name=name, directory=directory, num_components=len(inputs),
                      settings=settings if settings is not None else settings_with(tmp_path / "htmap"), **fields)

    return make


@pytest.fixture
def scheduler():
    return RecordingScheduler()
