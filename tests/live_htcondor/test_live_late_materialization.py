"""Late materialization: acts and edits reach the components that are not jobs yet."""
from __future__ import annotations

import htmap
from htmap import ComponentStatus as S

from tests.helpers import wait_until

from .conftest import wait_for


def memory_request_after(release_path):
    """Wait for ``release_path``; then the RequestMemory this job ran with (from its job ad)."""
    import os
    import time
    while not os.path.exists(release_path):
        time.sleep(0.1)
    for line in open(os.environ["_CONDOR_JOB_AD"]):
        if line.startswith("RequestMemory = "):
            return line.split("=", 1)[1].strip()
    return None


def late_map(tmp_path, n=6):
    release = tmp_path / "release"
    options = htmap.MapOptions(request_memory="100MB", max_idle="1")
    return htmap.map(memory_request_after, [str(release)] * n, map_options=options), release


def test_a_whole_map_hold_reaches_components_not_yet_jobs(tmp_path):
    m, release = late_map(tmp_path)
    m.hold()
    assert set(m.component_statuses) == {S.HELD}, m.component_statuses
    release.touch()
    m.release()
    assert S.HELD not in m.component_statuses
    m.wait(timeout=180)
    assert list(m) == ["100"] * 6


def test_hold_remove_and_edit_of_components_not_yet_jobs(tmp_path):
    m, release = late_map(tmp_path)
    wait_for(m, lambda: m.component_statuses.count(S.UNMATERIALIZED) == 3, message="3 components not yet jobs")
    m.hold([5])
    m.remove(components=[4])
    m.set_memory("300MB", [3])
    release.touch()
    # (component 5 may hold itself any time now: wait without failing on holds)
    wait_until(lambda: m.component_statuses[:4] == [S.COMPLETED] * 4, timeout=180, message="components 0-3")
    assert m[3] == "300" and m[2] == "100"
    wait_until(lambda: m.component_statuses[4:] == [S.REMOVED, S.HELD], timeout=120, message="4 removed, 5 held")
    assert "held by the user (htmap hold) before it started" in m.holds[5].reason
    m.release([5])
    assert m.get(5, timeout=120) == "100"
