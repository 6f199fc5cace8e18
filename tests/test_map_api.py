"""The Map object: loading, access, iteration, status, removal, rerun, retag."""
import datetime
import subprocess
import sys
import textwrap

import pytest

import htmap
from htmap import ComponentStatus, exceptions
from tests import funcs
from tests.helpers import wait_until

T = 60


def test_load_gives_one_object_per_tag_and_finds_maps_by_pattern():
    a = htmap.map(funcs.double, range(2), tag="run-a")
    b = htmap.map(funcs.double, range(2), tag="run-b")
    htmap.map(funcs.double, range(2), tag="other")
    assert htmap.load("run-a") is a and htmap.Map.load("run-b") is b
    assert htmap.get_tags("run-*") == ("run-a", "run-b")
    assert {m.tag for m in htmap.load_maps("run-*")} == {"run-a", "run-b"}
    with pytest.raises(exceptions.TagNotFound, match="run-a"):
        htmap.load("run-x")


def test_map_is_loadable_from_a_new_process_after_the_submitter_exits(tmp_path):
    script = textwrap.dedent("""
        import htmap, sys
        sys.path.insert(0, %r)
        from tests import funcs
        htmap.settings["ENGINE"] = "local"
        htmap.map(funcs.double, range(4), tag="from-child")
    """ % str(__import__("pathlib").Path(__file__).parent.parent))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=T)
    m = htmap.load("from-child")
    assert list(m.iter(timeout=T)) == [0, 2, 4, 6]


def test_access_and_iteration(tmp_path):
    release = tmp_path / "go"
    m = htmap.starmap(funcs.wait_for_file, args=[(str(release), i) for i in range(4)], tag="gate")
    assert len(m) == 4 and 3 in m and 4 not in m and m.components == (0, 1, 2, 3)
    with pytest.raises(exceptions.OutputNotFound):
        m[0]
    with pytest.raises(exceptions.TimeoutError):
        m.get(0, timeout=0.2)
    assert m.is_active and not m.is_done
    release.touch()
    assert list(m.iter_with_inputs(timeout=T)) == [(((str(release), i), {}), i) for i in range(4)]
    assert sorted(m.iter_as_available(timeout=T)) == [0, 1, 2, 3]
    assert sorted(v for _, v in m.iter_as_available_with_inputs(timeout=T)) == [0, 1, 2, 3]
    assert list(m.iter_inputs()) == [((str(release), i), {}) for i in range(4)]
    assert m[2] == 2 and m.get(3) == 3
    assert m.is_done and not m.is_active
    assert m.component_statuses == [ComponentStatus.COMPLETED] * 4
    assert m.components_by_status()[ComponentStatus.COMPLETED] == (0, 1, 2, 3)
    assert "COMPLETED" in m.status() or "completed" in m.status().lower()
    assert len(m.memory_usage) == 4 and all(isinstance(x, int) for x in m.memory_usage)
    assert all(isinstance(r, datetime.timedelta) for r in m.runtime)
    assert m.local_data > 0


def test_component_status_enum():
    names = [s.name for s in ComponentStatus]
    for name in ["UNKNOWN", "UNMATERIALIZED", "IDLE", "RUNNING", "REMOVED", "COMPLETED", "HELD",
                 "SUSPENDED", "ERRORED"]:
        assert name in names
        assert ComponentStatus[name] == name  # a str enum


def test_wait_with_progress_bar_counts_components(capsys):
    m = htmap.map(funcs.double, range(5), tag="bar-map")
    m.wait(timeout=T, show_progress_bar=True)
    err = capsys.readouterr().err
    assert "bar-map" in err and "5/5" in err and "component" in err


def test_wait_times_out(tmp_path):
    m = htmap.map(funcs.wait_for_file, [str(tmp_path / "never")], tag="slow")
    with pytest.raises(exceptions.TimeoutError):
        m.wait(timeout=0.3)
    m.remove()


def test_stdout_and_stderr_are_captured_separately():
    m = htmap.map(funcs.chatty, range(3), tag="chat")
    m.wait(timeout=T)
    assert m.stdout[1] == "out 1\n"
    assert m.stderr[1] == "err 1\n"
    assert m.stdout.get(2, timeout=T) == "out 2\n"


def test_remove_makes_every_method_raise():
    m = htmap.map(funcs.double, range(2), tag="gone")
    m.wait(timeout=T)
    directory = m._dir
    m.remove()
    assert not m.exists and not directory.exists()
    assert "gone" not in htmap.get_tags()
    for call in [lambda: m[0], lambda: m.get(0), lambda: list(m), lambda: m.wait(), lambda: m.status(),
                 lambda: m.errors, lambda: m.holds, lambda: m.rerun(), lambda: m.retag("x"), lambda: len(m),
                 lambda: m.component_statuses, lambda: m.hold(), lambda: m.stdout[0], lambda: m.is_done,
                 lambda: m.local_data, lambda: m.remove()]:
        with pytest.raises(exceptions.MapWasRemoved):
            call()


def test_htmap_remove_by_tag():
    htmap.map(funcs.double, [1], tag="rm-me").wait(timeout=T)
    htmap.remove("rm-me")
    assert htmap.get_tags() == ()
    htmap.remove("rm-me")  # not_exist_ok
    with pytest.raises(exceptions.TagNotFound):
        htmap.remove("rm-me", not_exist_ok=False)


def test_rerun_runs_finished_components_again(tmp_path):
    m = htmap.map(funcs.double, range(3), tag="again")
    m.wait(timeout=T)
    before = m._output_path(1).stat().st_mtime_ns
    m.rerun([1])
    assert m.get(1, timeout=T) == 2
    wait_until(lambda: m.component_statuses[1] is ComponentStatus.COMPLETED, T)
    assert m._output_path(1).stat().st_mtime_ns != before
    m.rerun()
    m.wait(timeout=T)
    assert list(m) == [0, 2, 4]


def test_rerun_refuses_unfinished_components(tmp_path):
    m = htmap.map(funcs.wait_for_file, [str(tmp_path / "go"), str(tmp_path / "go")], tag="busy")
    with pytest.raises(exceptions.CannotRerunComponents):
        m.rerun([0])
    (tmp_path / "go").touch()
    m.wait(timeout=T)


def test_retag_keeps_results_and_makes_map_permanent():
    m = htmap.map(funcs.double, range(3))
    assert m.is_transient
    m.wait(timeout=T)
    m.retag("renamed")
    assert m.tag == "renamed" and not m.is_transient
    assert htmap.get_tags() == ("renamed",)
    assert list(htmap.load("renamed")) == [0, 2, 4]
    other = htmap.map(funcs.double, [1], tag="taken")
    with pytest.raises(exceptions.TagAlreadyExists):
        m.retag("taken")
    other.wait(timeout=T)


def test_tag_already_exists():
    htmap.map(funcs.double, [1], tag="dup")
    with pytest.raises(exceptions.TagAlreadyExists, match="dup"):
        htmap.map(funcs.double, [1], tag="dup")


def test_status_functions_report_every_map():
    import csv
    import io
    import json

    m = htmap.map(funcs.double, range(3), tag="st")
    m.wait(timeout=T)
    text = htmap.status()
    assert "st" in text and "COMPLETED" in text.upper()
    rows = json.loads(htmap.status_json())
    row = rows[0] if isinstance(rows, list) else rows["st"]
    assert row["tag"] == "st" if "tag" in row else True
    parsed = list(csv.DictReader(io.StringIO(htmap.status_csv())))
    assert parsed[0]["tag"] == "st"
    assert int(parsed[0]["COMPLETED"]) == 3


def test_all_exceptions_subclass_htmap_exception():
    for name in ["TimeoutError", "MissingSetting", "OutputNotFound", "NoMapYet", "TagAlreadyExists",
                 "InvalidTag", "TagNotFound", "EmptyMap", "ReservedOptionKeyword", "MisalignedInputData",
                 "CannotRetagMap", "UnknownPythonDeliveryMethod", "MapWasRemoved", "InvalidOutputStatus",
                 "MapComponentError", "MapComponentHeld", "ExpectedError", "CannotRerunComponents"]:
        assert issubclass(getattr(exceptions, name), exceptions.HTMapException), name


def test_map_removed_by_another_process_stops_waiting_with_map_was_removed(tmp_path):
    release = tmp_path / "never"
    m = htmap.starmap(funcs.touch_then_wait, args=[(str(tmp_path), str(release), x) for x in range(3)],
                      tag="removed-elsewhere")
    other = subprocess.run([sys.executable, "-c", "import htmap; htmap.remove('removed-elsewhere')"],
                           capture_output=True, text=True, timeout=60)
    assert other.returncode == 0, other.stderr
    with pytest.raises(exceptions.MapWasRemoved, match="another command or process"):
        m.wait(timeout=60)  # would wait the whole minute for components that no longer exist
    with pytest.raises(exceptions.MapWasRemoved):
        m.get(0)
