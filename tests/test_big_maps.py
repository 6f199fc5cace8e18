"""Acting on every component of a big map costs one event and a few bytes of state, not one per component."""
import pickle

import htmap
from htmap import ComponentStatus
from htmap.engines.base import ComponentEvent, EventKind
from htmap.state import MapState
from tests import funcs
from tests.helpers import wait_until

T = 60


def test_holding_a_whole_map_writes_one_event_line(tmp_path):
    markers, release = tmp_path / "markers", tmp_path / "go"
    markers.mkdir()
    n = 5000
    m = htmap.starmap(funcs.touch_then_wait, args=[(str(markers), str(release), x) for x in range(n)], tag="big-hold")
    wait_until(lambda: len(list(markers.iterdir())) >= 1, T, message="a component to start")
    m.hold()
    assert m.component_statuses == [ComponentStatus.HELD] * n
    events = (m._dir / "engine" / "events").read_text().splitlines()
    held = [line for line in events if " held " in line]
    assert len(held) == 1 and held[0].split()[1] == f"0+{n}", held
    assert len(m.holds) == n and "held by the user" in m.holds[n - 1].reason

    m.release(components=[10, 11])
    release.touch()
    assert m.get(10, timeout=T) == 100 and m.get(11, timeout=T) == 110
    assert [s for s in m.component_statuses[9:13]] == [ComponentStatus.HELD, ComponentStatus.COMPLETED,
                                                      ComponentStatus.COMPLETED, ComponentStatus.HELD]
    assert [kind for _, kind, _ in m._state.history[10]] == ["held", "released"]
    assert 10 not in m.holds and 12 in m.holds


def event(kind, first, count=1, t=1.0, reason=None, code=None):
    return ComponentEvent(component=first, kind=kind, time=t, reason=reason, code=code, count=count)


def test_bulk_events_fold_into_compact_state():
    n = 1_000_000
    s = MapState(n)
    s.apply(event(EventKind.SUBMITTED, 0, n, t=1.0))
    s.apply(event(EventKind.HELD, 0, n, t=2.0, reason="held by the user", code=1))
    s.apply(event(EventKind.RELEASED, 7, t=2.0))  # same time as the hold: order still kept
    s.apply(event(EventKind.HELD, 7, t=3.0, reason="out of memory", code=34))
    s.apply(event(EventKind.REMOVED, 500_000, 10, t=4.0, reason="removed by the user"))
    assert s.counts()[ComponentStatus.HELD] == n - 10 and s.counts()[ComponentStatus.REMOVED] == 10
    assert s.holds.get(7) == ("out of memory", 34) and s.holds.get(8) == ("held by the user", 1)
    assert [k for _, k, _ in s.history[7]] == ["held", "released", "held"]
    assert [k for _, k, _ in s.history[500_003]] == ["held", "removed"]
    blob = pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(blob) < 70 * 1_000_000  # arrays of a million numbers; no object per component
    again = pickle.loads(blob)
    assert again.holds.get(999_999) == ("held by the user", 1) and again.history.get(3)[0][1] == "held"


def test_per_component_events_of_one_bulk_action_fold_as_a_range():
    """E.g. HTCondor's event log reports a cluster-wide hold job by job."""
    s = MapState(1000)
    s.apply(event(EventKind.SUBMITTED, 0, 1000))
    s.apply_all([event(EventKind.HELD, c, t=5.0, reason="via condor_hold", code=1) for c in range(1000)]
                + [event(EventKind.RELEASED, 3, t=6.0)])
    assert len(s.history.ranges) == 1 and list(s.history.single) == [3]
    assert s.counts()[ComponentStatus.HELD] == 999 and s.holds.get(999) == ("via condor_hold", 1)
    assert [k for _, k, _ in s.history[3]] == ["held", "released"] and s.holds.get(3) is None


def test_rerun_of_many_components_removes_their_old_results_first(tmp_path):
    markers, release = tmp_path / "markers", tmp_path / "go"
    markers.mkdir()
    release.touch()
    n = 1500  # above the size at which rerun deletes by listing the directories once
    m = htmap.starmap(funcs.run_count_then_wait, args=[(str(markers), str(release), x) for x in range(n)],
                      tag="big-rerun")
    m.wait(timeout=T)
    release.unlink()  # the second runs wait
    m.rerun()
    assert not [p for p in (m._dir / "outputs").rglob("*.out")]
    try:
        m[n - 1]
        raise AssertionError("an old result is still readable after rerun")
    except htmap.exceptions.OutputNotFound:
        pass
    release.touch()
    assert list(m.iter(timeout=T)) == [10 * x for x in range(n)]
    assert len(list(markers.iterdir())) == 2 * n


def test_state_of_a_million_components_is_saved_small_and_read_back(tmp_path):
    n = 1_000_000
    s = MapState(n)
    s.apply(event(EventKind.SUBMITTED, 0, n))
    s.apply(event(EventKind.HELD, 10, n - 10, t=2.0, reason="held by the user", code=1))
    path = tmp_path / "state"
    s.save(path)
    assert path.stat().st_size < 1_000_000  # was 53 MB, rewritten every few seconds while the map ran
    again = MapState.load(path, n)
    assert again.counts() == s.counts() and again.holds.get(n - 1) == ("held by the user", 1)
    path.write_bytes(path.read_bytes()[:100])  # torn or foreign: start afresh (events are the truth)
    assert MapState.load(path, n).counts()[ComponentStatus.UNKNOWN] == n
