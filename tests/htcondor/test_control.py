"""act / edit / credd through the Scheduler seam; availability and the missing-bindings path."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
import sys
import time

import pytest

htcondor2 = pytest.importorskip("htcondor2", reason="the htcondor engine tests need: pip install 'htmap[htcondor]'")
classad2 = pytest.importorskip("classad2")

from htmap import exceptions
from htmap.engines.base import Action
from htmap.engines.htcondor import bindings
from htmap.engines.htcondor.engine import ACTIONS, HTCondorEngine, map_constraint

from .conftest import FIXTURES, RecordingScheduler


def fixture_ads(name):
    text = (FIXTURES / f"{name}.ads.txt").read_text()
    return [classad2.ClassAd(b) for b in re.split(r"^# ---- .*----\s*$", text, flags=re.M) if b.strip()]


def matching(constraint, ads):
    expr = classad2.ExprTree(constraint)
    return [ad["component"] for ad in ads if expr.eval(ad) is True]


def test_act_constraints_select_the_maps_components(make_job):
    job = make_job([0, 1, 2, 3])
    sched = RecordingScheduler()
    engine = HTCondorEngine(job.settings, scheduler=sched)
    engine.submit(job)
    ads = fixture_ads("remove")  # 4 real job ads with component = 0..3
    for ad in ads:
        ad["HTMapJobId"] = job.job_id
    other = fixture_ads("basic")[0]
    other["HTMapJobId"] = "someone-elses-map"
    ads.append(other)
    engine.act(job, Action.HOLD, None, "wait")
    engine.act(job, Action.REMOVE, [1, 2], None)
    engine.act(job, Action.PAUSE, [3])
    engine.act(job, Action.RELEASE, [0, 2])
    calls = [v for k, v in sched.calls if k == "act"]
    assert [c[0] for c in calls] == ["Hold", "Remove", "Suspend", "Release"]
    assert [getattr(htcondor2.JobAction, c[0]) for c in calls]  # real JobAction members
    assert calls[0][2] == ("wait", 0)  # always (text, code): the 25.x bindings drop a plain string
    assert calls[1][2] == ("remove by htmap", 0)
    assert calls[0][1].startswith("(ClusterId == 100) && ")  # the map's recorded cluster only
    for ad in ads:
        ad["ClusterId"] = 100
    assert matching(calls[0][1], ads) == [0, 1, 2, 3]
    assert matching(calls[1][1], ads) == [1, 2]
    assert matching(calls[2][1], ads) == [3]
    assert matching(calls[3][1], ads) == [0, 2]
    assert set(ACTIONS) == set(Action)
    assert all(hasattr(htcondor2.JobAction, name) for name in ACTIONS.values())


def test_edit_memory_and_disk_only_unfinished(make_job):
    job = make_job([0, 1])
    sched = RecordingScheduler()
    engine = HTCondorEngine(job.settings, scheduler=sched)
    engine.submit(job)
    engine.edit(job, "request_memory", 4096, [1])
    engine.edit(job, "request_disk", 2_000_000)
    (c1, attr1, v1), (c2, attr2, v2) = [v for k, v in sched.calls if k == "edit"]
    assert (attr1, v1, attr2, v2) == ("RequestMemory", "4096", "RequestDisk", "2000000")
    done, running = fixture_ads("rerun")[1], fixture_ads("user_hold_release")[1]  # JobStatus 4 and 5
    for ad in (done, running):
        ad["HTMapJobId"] = job.job_id
        ad["ClusterId"] = 100
        ad["component"] = 1
    assert classad2.ExprTree(c1).eval(done) is False  # completed jobs are left alone
    assert classad2.ExprTree(c1).eval(running) is True
    with pytest.raises(exceptions.InvalidOption):
        engine.edit(job, "request_cpus", 2)
    escalating = make_job([0], fixed={"request_memory": 100, "max_retries": 2, "retry_memory_factor": 2.0})
    engine.edit(escalating, "request_memory", 300)
    assert sched.calls[-1][1][1] == "HTMapRequestMemory"  # the base the escalation grows from


def test_constraint_compresses_ranges():
    from htmap.engines.base import JobSet
    from pathlib import Path

    job = JobSet(job_id="u", name="t", directory=Path("/x"), num_components=10)
    c = map_constraint(job, [5, 0, 1, 2, 3, 9])
    assert c == '(HTMapJobId == "u") && ((component >= 0 && component <= 3) || component == 5 || component == 9)'
    assert map_constraint(job, []) == "false"


def test_credd_call_shape(monkeypatch):
    calls = []

    class FakeCredd:
        def __init__(self, location=None):
            calls.append(("Credd", location))

        def add_user_cred(self, credtype, credential, user=None):
            calls.append(("add_user_cred", credtype, credential))

    monkeypatch.setattr(htcondor2, "Credd", FakeCredd)
    bindings.HTCondorScheduler().add_kerberos_credential()
    assert calls == [("Credd", None), ("add_user_cred", htcondor2.CredType.Kerberos, None)]

    class NoCredd(FakeCredd):
        def add_user_cred(self, *a, **k):
            raise htcondor2.HTCondorException("Unable to locate local daemon")

    monkeypatch.setattr(htcondor2, "Credd", NoCredd)
    with pytest.raises(exceptions.EngineUnavailable, match="kinit"):
        bindings.HTCondorScheduler().add_kerberos_credential()


def test_available_says_no_quickly_without_a_schedd(monkeypatch):
    monkeypatch.setenv("CONDOR_CONFIG", "/nonexistent/condor_config")
    started = time.monotonic()
    ok, why = HTCondorEngine.available()
    assert not ok and "schedd" in why
    assert time.monotonic() - started < bindings.PROBE_TIMEOUT + 1


def test_probe_never_hangs():
    import socket

    silent = socket.socket()  # accepts connections, never answers: a collector that hangs
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        started = time.monotonic()
        ok, why = bindings.probe(collector=f"127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
    finally:
        silent.close()
    assert not ok and "within 1 s" in why and time.monotonic() - started < 5


def test_missing_bindings_clear_error_and_htmap_import_does_not_need_them(make_job, monkeypatch):
    code = ("import sys, htmap, htmap.engines.htcondor.engine, htmap.engines.htcondor.description; "
            "print('htcondor2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(Path(__file__).resolve().parents[2]))
    assert out.stdout.strip() == "False", out.stderr
    monkeypatch.setitem(sys.modules, "htcondor2", None)  # as if not installed
    with pytest.raises(exceptions.EngineUnavailable, match=re.escape("pip install 'htmap[htcondor]'")):
        bindings.import_htcondor2()
    ok, why = bindings.probe()
    assert not ok and "pip install 'htmap[htcondor]'" in why
    job = make_job([1])
    with pytest.raises(exceptions.EngineUnavailable, match="htmap\\[htcondor\\]"):
        HTCondorEngine(job.settings).check(job)
    with pytest.raises(exceptions.EngineUnavailable, match="htmap\\[htcondor\\]"):
        HTCondorEngine(job.settings).submit(job)


def test_real_scheduler_calls_the_bindings_with_the_right_shapes(monkeypatch, make_job):
    """HTCondorScheduler against a stand-in Schedd: real Submit objects, real JobAction members."""
    calls = []

    class Result:
        def cluster(self):
            return 77

    class FakeSchedd:
        def __init__(self, location=None):
            calls.append(("Schedd", location))

        def submit(self, description, count=0, spool=False, itemdata=None, queue=None):
            calls.append(("submit", description, list(itemdata)))
            return Result()

        def act(self, action, job_spec, reason=None):
            calls.append(("act", action, job_spec, reason))

        def edit(self, job_spec, attr, value):
            calls.append(("edit", job_spec, attr, value))

    monkeypatch.setattr(htcondor2, "Schedd", FakeSchedd)
    job = make_job([5, 6])
    engine = HTCondorEngine(job.settings)  # the real seam, over the stand-in
    engine.submit(job)
    engine.act(job, Action.VACATE, [1])
    engine.edit(job, "request_disk", 1000)
    assert calls[0] == ("Schedd", None)
    _, sub, items = calls[1]
    assert isinstance(sub, htcondor2.Submit) and sub["JobBatchName"] == "mymap"
    assert items == [{"component": "0"}, {"component": "1"}]
    assert calls[2][1] is htcondor2.JobAction.Vacate and calls[2][3] == ("vacate by htmap", 0)
    assert calls[2][2].startswith("(ClusterId == 77) && ")
    assert calls[3][2:] == ("RequestDisk", "1000")


def test_removing_a_late_materialized_map_removes_its_factory(make_job, monkeypatch):
    from htmap.engines.htcondor import description as D

    monkeypatch.setattr(D, "LATE_MATERIALIZATION_THRESHOLD", 2)
    job = make_job([1, 2, 3])
    sched = RecordingScheduler()
    engine = HTCondorEngine(job.settings, scheduler=sched)
    engine.submit(job)  # cluster 100, late
    engine.submit(job, [0])  # a small rerun: cluster 101, not late
    engine.act(job, Action.REMOVE, [2])
    assert [v[1] for k, v in sched.calls if k == "act"][-1].endswith("(component == 2)")  # components: jobs only
    engine.act(job, Action.REMOVE)
    acts = [v for k, v in sched.calls if k == "act"][-2:]
    assert acts[0][1].startswith("(ClusterId == 100 || ClusterId == 101) && ")
    assert acts[1] == ("Remove", "100", ("remove by htmap", 0))  # "clusterID" job spec: the factory too
