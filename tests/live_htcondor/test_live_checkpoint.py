"""Checkpoints survive a vacate on the live pool (htmap.checkpoint, m.vacate / condor_vacate_job)."""
from __future__ import annotations

import pytest

import htmap
from tests import funcs

from .conftest import condor, wait_for


@pytest.mark.parametrize("how", ["htmap", "condor_vacate_job"])
def test_component_restarts_from_its_checkpoint_after_vacate(tmp_path, how):
    markers, release = tmp_path / "markers", tmp_path / "release"
    markers.mkdir()
    m = htmap.starmap(funcs.counting_checkpoint, [(str(markers), str(release))])
    wait_for(m, lambda: (markers / "checkpointed-2").exists(), message="the checkpoint at step 2")
    if how == "htmap":
        m.vacate()
    else:
        condor("condor_vacate_job", "-constraint", f'HTMapJobId == "{m.uid}"')
    # the first run never goes on (release stays absent): only a restart can finish
    wait_for(m, lambda: len(list(markers.glob("resumed-at-*"))) == 2, message="the restart")
    assert m.get(0, timeout=180) == 5
    resumed = sorted(p.name.split("-")[2] for p in markers.glob("resumed-at-*"))
    assert resumed == ["0", "2"], resumed
