"""Through the public API: htmap.map on the htcondor engine, the pool replaced at the Scheduler seam."""
from __future__ import annotations

import shutil

import pytest

htcondor2 = pytest.importorskip("htcondor2", reason="the htcondor engine tests need htmap-ng's htcondor extra: pip install 'htcondor>=24'")

import htmap
from htmap import jobfiles, runner, store
from htmap.engines.htcondor import bindings

from .conftest import FIXTURES, RecordingScheduler, double


class Pool(RecordingScheduler):
    """Hands out the fixture's cluster id so the real basic.events log belongs to the map."""

    def __init__(self, *a, **k):
        super().__init__()
        self.next_cluster = 44


def test_map_runs_through_the_engine(monkeypatch):
    pool = Pool()
    monkeypatch.setattr(bindings, "HTCondorScheduler", lambda *a, **k: pool)
    htmap.settings["ENGINE"] = "htcondor"
    m = htmap.map(double, [1, 2, 3], tag="condor-map", map_options=htmap.MapOptions(request_memory="1GB"))
    desc, items = pool.calls[0][1]
    assert desc["JobBatchName"] == "condor-map" and desc["request_memory"] == "1024" and len(items) == 3
    assert m.engine == "htcondor"
    # what the pool would do: run the wrapper's runner, bring back outputs, write the event log
    job_dir = m._dir
    for c, x in enumerate([1, 2, 3]):
        data = runner.load_and_run(str(job_dir / "func"), str(m._job.paths.engine_input(c, f"{c}.in")), c, str(job_dir))
        store.write_bytes_atomic(m._job.paths.output(c), data)
    shutil.copyfile(FIXTURES / "basic.events", job_dir / "engine" / "events")
    assert list(m) == [2, 4, 6]
    assert m.component_statuses == [htmap.ComponentStatus.COMPLETED] * 3
    m.hold([1])
    action, constraint, reason = pool.calls[-1][1]
    assert action == "Hold" and "component == 1" in constraint and f'"{m._job.job_id}"' in constraint


def test_transfer_paths_and_options_reach_the_description(monkeypatch, tmp_path):
    pool = Pool()
    monkeypatch.setattr(bindings, "HTCondorScheduler", lambda *a, **k: pool)
    htmap.settings["ENGINE"] = "htcondor"
    data = tmp_path / "in.txt"
    data.write_text("x")
    opts = htmap.MapOptions(fixed_input_files=[htmap.TransferPath("/store/f.root", protocol="root", location="eos.cern.ch")],
                            output_remaps={"out.txt": htmap.TransferPath("/o/out.txt", protocol="s3", location="bucket")},
                            max_retries=2, retry_exceptions=[KeyError], custom_options={"JobFlavour": '"workday"'})
    htmap.map(len, [htmap.TransferPath(data), "abc"], tag="files", map_options=opts)
    desc, items = pool.calls[0][1]
    assert desc["transfer_input_files"].endswith(",root://eos.cern.ch//store/f.root$(htmap_more_inputs)")
    assert items[0]["htmap_more_inputs"] == f",{data}" and items[1]["htmap_more_inputs"] == ""
    assert all(i["htmap_more_remaps"] == ";out.txt=s3://bucket/o/out.txt" for i in items)
    assert desc["environment"] == '"HTMAP_RETRY_EXCEPTIONS=KeyError"' and desc["MY.HTMapMaxRetries"] == "2"
    assert desc["MY.JobFlavour"] == '"workday"'
    htcondor2.Submit(desc)
