"""Acts on a live pool: after hold/release/remove returns, what the user reads reflects it."""
from __future__ import annotations

import htmap
import pytest
from tests import funcs

from .conftest import job_ads


def test_hold_then_release_then_wait_sees_no_stale_hold():
    m = htmap.map(funcs.sleep_then, range(3), map_options=htmap.MapOptions(request_memory="200MB"))
    m.hold()
    assert set(m.component_statuses) == {htmap.ComponentStatus.HELD}
    m.release()
    assert htmap.ComponentStatus.HELD not in m.component_statuses
    m.wait(timeout=120)
    assert list(m) == [0, 1, 2]


def test_missing_input_file_is_held_then_runs_once_created_and_released(tmp_path):
    data = tmp_path / "data.txt"
    m = htmap.map(funcs.read_text, ["data.txt"], map_options=htmap.MapOptions(fixed_input_files=[str(data)]))
    with pytest.raises(htmap.exceptions.MapComponentHeld) as held:
        m.wait(timeout=120)
    assert "data.txt" in str(held.value)
    data.write_text("hello")
    data.chmod(0o644)
    m.release()
    m.wait(timeout=120)
    assert m[0] == "hello"


def test_remove_leaves_no_job_in_the_queue():
    m = htmap.map(funcs.sleep_then, range(4), map_options=htmap.MapOptions(request_memory="200MB"))
    uid = m.uid
    m.remove()
    import htcondor2
    assert htcondor2.Schedd().query(f'HTMapJobId == "{uid}" && JobStatus != 3', ["ClusterId"]) == []


def test_a_component_that_kills_its_runner_is_held_with_the_exit_status():
    m = htmap.map(funcs.exit_hard, [3])
    with pytest.raises(htmap.exceptions.MapComponentHeld, match="exited with status 3"):
        m.wait(timeout=120)
