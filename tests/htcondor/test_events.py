"""Event-log folding with the real htcondor2.JobEventLog over the real logs in tests/htcondor/fixtures (a copy of shared/fixtures/htcondor)."""
from __future__ import annotations

import json
import pickle
import random
import shutil

import pytest

htcondor2 = pytest.importorskip("htcondor2", reason="the htcondor engine tests need htmap-ng's htcondor extra: pip install 'htcondor>=24'")

from htmap import jobfiles, runner, store
from htmap.engines.base import EventKind as K
from htmap.engines.htcondor.engine import HTCondorEngine
from htmap.state import ComponentStatus as S
from htmap.state import MapState

from .conftest import FIXTURES, RecordingScheduler

CLUSTERS = {  # which components each fixture's clusters ran, in item order
    "basic": {44: [0, 1, 2]}, "nonzero_exit_hold": {46: [0]}, "user_hold_release": {48: [0]},
    "vacate": {50: [0]}, "suspend": {53: [0]}, "remove": {54: [0, 1, 2, 3]}, "missing_input": {47: [0]},
    "late_materialization": {49: list(range(10))}, "rerun": {51: [0, 1], 52: [1]}, "memory_usage": {45: [0]},
    "periodic_hold_memory": {43: [0]}, "structured_notes_attrs": {56: [0, 1]}, "no_batchname": {57: [0, 1]},
}


def load_fixture(make_job, name, n, outputs=None, record=True, late=False):
    """A job set whose event log is the fixture's, with its clusters recorded like submit() does."""
    job = make_job(list(range(n)))
    store.make_dir(job.engine_dir)
    shutil.copyfile(FIXTURES / f"{name}.events", job.engine_dir / "events")
    if record:
        records = [{"cluster": c, "runs": [[comps[0], 1]] if len(comps) == 1 else [[comps[0], len(comps)]],
                    "late": late, "time": 0.0} for c, comps in CLUSTERS[name].items()]
        (job.engine_dir / "clusters.json").write_text(json.dumps(records))
    for c, kind in (outputs or {}).items():
        path = job.paths.output(c)
        if kind == "OK":
            store.write_bytes_atomic(path, runner.OK + pickle.dumps(c))
        else:
            store.write_bytes_atomic(path, runner.ERR + pickle.dumps({"exception_type": "ValueError"}))
    return job


def fold(job, cursor=None):
    engine = HTCondorEngine(job.settings, scheduler=RecordingScheduler())
    return engine.read_events(job, cursor)


def kinds_of(events, component):
    return [e.kind for e in events if e.component == component and e.count == 1 and e.kind is not K.RESOURCES]


def state_after(job, events):
    state = MapState(job.num_components)
    for e in events:
        state.apply(e)
    return state


def test_basic_completed_and_errored_from_outputs(make_job):
    job = load_fixture(make_job, "basic", 3, outputs={0: "OK", 1: "ERR"})
    events, cursor = fold(job)
    assert events[0].kind is K.SUBMITTED and events[0].count == 3  # from the cluster record, before the log
    assert kinds_of(events[1:], 0) == [K.SUBMITTED, K.RUNNING, K.COMPLETED]
    assert kinds_of(events[1:], 1) == [K.SUBMITTED, K.RUNNING, K.ERRORED]
    last = [e for e in events if e.component == 2][-1]
    assert last.kind is K.ERRORED and "exited with status 0 but no output came back" in last.reason
    assert jobfiles.read_output(job.paths.output(2))[0] == "ERR"  # a report the user can read
    mem = [e.memory_mb for e in events if e.kind is K.RESOURCES and e.component == 1]
    assert mem == [10]
    again, cursor2 = fold(job, cursor)
    assert again == [] and cursor2["offset"] == cursor["offset"] > 0


def test_nonzero_exit_hold_reason_and_stderr_tail(make_job):
    job = load_fixture(make_job, "nonzero_exit_hold", 1)
    store.write_bytes_atomic(job.paths.log(0, "stderr"), b"Traceback...\nhtmap: the runner exited with status 3\n")
    events, _ = fold(job)
    held = events[-1]
    assert held.kind is K.HELD and held.code == 3
    assert "OnExitHold" in held.reason and "exited with status 3" in held.reason
    assert state_after(job, events).status_of(0) is S.HELD


def test_user_hold_release_vacate_suspend(make_job):
    job = load_fixture(make_job, "user_hold_release", 1, outputs={0: "OK"})
    events, _ = fold(job)
    assert kinds_of(events[1:], 0) == [K.SUBMITTED, K.RUNNING, K.EVICTED, K.HELD, K.RELEASED, K.RUNNING, K.COMPLETED]
    held = next(e for e in events if e.kind is K.HELD)
    assert held.code == 1 and held.reason.startswith("held by test")
    job = load_fixture(make_job, "vacate", 1, outputs={0: "OK"})
    events, _ = fold(job)
    assert kinds_of(events[1:], 0) == [K.SUBMITTED, K.RUNNING, K.EVICTED, K.RUNNING, K.COMPLETED]
    assert next(e for e in events if e.kind is K.EVICTED).reason == "Job vacated by schedd"
    job = load_fixture(make_job, "suspend", 1, outputs={0: "OK"})
    events, _ = fold(job)
    assert kinds_of(events[1:], 0) == [K.SUBMITTED, K.RUNNING, K.SUSPENDED, K.UNSUSPENDED, K.COMPLETED]


def test_remove_running_and_idle(make_job):
    job = load_fixture(make_job, "remove", 4)
    events, _ = fold(job)
    state = state_after(job, events)
    assert [state.status_of(c) for c in range(4)] == [S.REMOVED] * 4
    assert kinds_of(events[1:], 0)[-2:] == [K.EVICTED, K.REMOVED]
    assert kinds_of(events[1:], 3) == [K.SUBMITTED, K.REMOVED]
    assert all(e.reason.startswith("removed by test") for e in events if e.kind is K.REMOVED)


def test_missing_input_and_memory_holds(make_job):
    job = load_fixture(make_job, "missing_input", 1)
    events, _ = fold(job)
    held = events[-1]
    assert held.kind is K.HELD and held.code == 13 and "does_not_exist.txt" in held.reason
    job = load_fixture(make_job, "periodic_hold_memory", 1)
    events, _ = fold(job)
    assert events[-1].kind is K.HELD and "PeriodicHold" in events[-1].reason
    assert state_after(job, events).memory_mb[0] == 210
    job = load_fixture(make_job, "memory_usage", 1, outputs={0: "OK"})
    events, _ = fold(job)
    assert [e.memory_mb for e in events if e.kind is K.RESOURCES] == [6, 210]
    assert state_after(job, events).memory_mb[0] == 210 and state_after(job, events).status_of(0) is S.COMPLETED


def test_late_materialization_skips_cluster_events(make_job):
    job = load_fixture(make_job, "late_materialization", 10, outputs={c: "OK" for c in range(10)}, late=True)
    events, _ = fold(job)
    assert events[0].kind is K.UNMATERIALIZED and events[0].count == 10
    state = state_after(job, events[:1])
    assert state.status_of(9) is S.UNMATERIALIZED
    state = state_after(job, events)
    assert all(state.status_of(c) is S.COMPLETED for c in range(10))
    assert sum(1 for e in events if e.kind is K.SUBMITTED) == 10


def test_rerun_cluster_maps_proc_to_component(make_job):
    job = load_fixture(make_job, "rerun", 2, outputs={0: "OK", 1: "OK"})
    events, _ = fold(job)
    assert kinds_of(events, 1).count(K.COMPLETED) == 2  # cluster 52's proc 0 is component 1
    assert kinds_of(events, 0).count(K.COMPLETED) == 1


@pytest.mark.parametrize("name", ["structured_notes_attrs", "no_batchname"])
def test_component_from_submit_notes_without_cluster_record(make_job, name):
    job = load_fixture(make_job, name, 2, outputs={0: "OK", 1: "OK"}, record=False)
    events, cursor = fold(job)
    state = state_after(job, events)
    assert [state.status_of(c) for c in range(2)] == [S.COMPLETED, S.COMPLETED]
    assert cursor["learned"] == {56 if name.startswith("structured") else 57: {0: 0, 1: 1}}
    pickle.loads(pickle.dumps(cursor))


@pytest.mark.parametrize("name, n", [("user_hold_release", 1), ("late_materialization", 10), ("remove", 4)])
def test_log_growing_while_read(make_job, name, n):
    """Copy a real log in random pieces (often mid-event); fold after each; the result equals one full read."""
    whole = load_fixture(make_job, name, n, outputs={c: "OK" for c in range(n)})
    expected, _ = fold(whole)
    job = load_fixture(make_job, name, n, outputs={c: "OK" for c in range(n)})
    data = (FIXTURES / f"{name}.events").read_bytes()
    log = job.engine_dir / "events"
    log.write_bytes(b"")
    rng = random.Random(7)
    got, cursor, pos = [], None, 0
    while pos < len(data):
        step = rng.randint(1, 600)
        with open(log, "ab") as f:
            f.write(data[pos:pos + step])
        pos += step
        events, cursor = fold(job, pickle.loads(pickle.dumps(cursor)))  # persisted between reads
        got.extend(events)
    assert got == expected


def test_big_logs_are_folded_in_steps(make_job, monkeypatch):
    from htmap.engines.htcondor import events as ev

    whole = load_fixture(make_job, "late_materialization", 10, outputs={c: "OK" for c in range(10)}, late=True)
    expected, _ = fold(whole)
    monkeypatch.setattr(ev, "MAX_READ", 700)  # a few events per read
    job = load_fixture(make_job, "late_materialization", 10, outputs={c: "OK" for c in range(10)}, late=True)
    got, cursor, reads, last = [], None, 0, -1
    while cursor is None or cursor["offset"] != last:
        last = cursor["offset"] if cursor else -1
        events, cursor = fold(job, cursor)
        reads += 1
        got.extend(events)
    assert got == expected and reads > 20
    assert cursor["offset"] == (FIXTURES / "late_materialization.events").stat().st_size
