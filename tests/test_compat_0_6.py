"""HTMap 0.6 scripts run unchanged: the public surface of 0.6 and its behaviours (issue 11).

The name lists below were read off HTMap 0.6.1 (github.com/htcondor/htmap, archived): its
``htmap/__init__.py``, ``htmap/exceptions.py``, ``htmap/maps.py`` and ``htmap/cli.py``.
"""
from __future__ import annotations

import datetime
import inspect

import click
import pytest

import htmap
from htmap import exceptions
from htmap.state import ComponentStatus
from tests import funcs
from tests.helpers import run_cli, wait_until

T = 60  # seconds: a generous deadline for small maps

# -- the public surface ----------------------------------------------------------------

TOP_LEVEL_0_6 = [
    "BASE_SETTINGS", "USER_SETTINGS", "settings", "__version__", "version", "version_info", "exceptions",
    "checkpoint", "ComponentError", "ComponentHold", "Transplant", "clean", "load", "load_maps", "remove",
    "status", "status_csv", "status_json", "transplant_info", "transplants", "MappedFunction", "mapped",
    "MapBuilder", "build_map", "map", "starmap", "Map", "MapOutputFiles", "MapStdErr", "MapStdOut",
    "MapOptions", "register_delivery_method", "ComponentStatus", "get_tags", "TransferPath",
    "transfer_output_files",
]

EXCEPTIONS_0_6 = [
    "HTMapException", "TimeoutError", "MissingSetting", "OutputNotFound", "NoMapYet", "TagAlreadyExists",
    "InvalidTag", "TagNotFound", "EmptyMap", "ReservedOptionKeyword", "MisalignedInputData", "CannotRetagMap",
    "UnknownPythonDeliveryMethod", "MapWasRemoved", "InvalidOutputStatus", "MapComponentError",
    "MapComponentHeld", "ExpectedError", "CannotTransplantPython", "CannotRerunComponents",
    "InsufficientHTCondorVersion", "CorruptEventLog",
]

# Map's public members in 0.6, with the keyword parameters 0.6 scripts pass
MAP_MEMBERS_0_6 = {
    "load": ["tag"], "wait": ["timeout", "show_progress_bar", "holds_ok", "errors_ok"],
    "get": ["component", "timeout"], "get_err": ["component", "timeout"], "iter": ["timeout"],
    "iter_with_inputs": ["timeout"], "iter_as_available": ["timeout"],
    "iter_as_available_with_inputs": ["timeout"], "iter_inputs": [], "components_by_status": [],
    "status": [], "hold_report": [], "error_reports": [], "remove": ["force"], "hold": [], "release": [],
    "pause": [], "resume": [], "vacate": [], "set_memory": ["memory"], "set_disk": ["disk"],
    "rerun": ["components"], "retag": [],
}
MAP_PROPERTIES_0_6 = [
    "tag", "components", "is_done", "is_active", "component_statuses", "holds", "errors", "memory_usage",
    "runtime", "local_data", "exists", "is_transient", "stdout", "stderr", "output_files",
]


@pytest.mark.parametrize("name", TOP_LEVEL_0_6)
def test_every_top_level_name_of_0_6_exists(name):
    assert hasattr(htmap, name), f"htmap.{name} (HTMap 0.6) is missing"


@pytest.mark.parametrize("name", EXCEPTIONS_0_6)
def test_every_exception_of_0_6_exists_and_is_an_htmap_exception(name):
    cls = getattr(exceptions, name, None)
    assert isinstance(cls, type) and issubclass(cls, Exception), f"htmap.exceptions.{name} is missing"
    assert issubclass(cls, exceptions.HTMapException)


@pytest.mark.parametrize("name,params", sorted(MAP_MEMBERS_0_6.items()))
def test_map_methods_take_the_keywords_of_0_6(name, params):
    member = getattr(htmap.Map, name)
    assert callable(member)
    accepted = inspect.signature(member).parameters
    for p in params:
        if p == "tag" and name == "load":
            continue
        assert p in accepted, f"Map.{name} does not take {p}= (HTMap 0.6 did)"


@pytest.mark.parametrize("name", MAP_PROPERTIES_0_6)
def test_map_properties_of_0_6_exist(name):
    assert hasattr(htmap.Map, name)


def test_output_sequences_are_the_classes_of_0_6():
    m = htmap.map(funcs.double, [1], tag="classes")
    assert isinstance(m.stdout, htmap.MapStdOut) and isinstance(m.stderr, htmap.MapStdErr)
    assert isinstance(m.output_files, htmap.MapOutputFiles)
    m.wait(timeout=T)
    assert len(m.stdout) == len(m.stderr) == len(m.output_files) == 1


# -- behaviours ------------------------------------------------------------------------

def gate_map(tmp_path, n, tag):
    """A map whose components wait until the test creates ``gate``."""
    gate = tmp_path / "gate"
    return gate, htmap.map(funcs.wait_for_file, [str(gate)] * n, tag=tag)


def test_errors_is_a_dict_that_waits_for_components(tmp_path):
    gate = tmp_path / "gate"
    m = htmap.starmap(funcs.fail_on, args=[(0,), (1,)], kwargs=[{}, {"bad": 1}], tag="errdict")
    m.wait(timeout=T, errors_ok=True)
    errors = m.errors
    assert isinstance(errors, dict) and list(errors) == [1]
    assert isinstance(errors[1], htmap.ComponentError)
    # a component still running is waited for
    m2 = htmap.map(funcs.wait_for_file, [str(gate)], tag="errwait")
    assert m2.errors_so_far == {}
    gate.touch()
    assert m2.errors == {} and m2.is_done


def test_in_on_stdout_and_stderr_asks_whether_the_map_has_the_component(tmp_path):
    gate, m = gate_map(tmp_path, 2, "contains")
    assert 0 in m.stdout and 1 in m.stderr and 2 not in m.stdout and -1 not in m.stderr
    assert 0 in m.output_files and 5 not in m.output_files
    gate.touch()


def test_reading_stdout_too_early_raises_what_0_6_raised(tmp_path):
    gate, m = gate_map(tmp_path, 1, "early")
    with pytest.raises(FileNotFoundError):
        m.stdout[0]
    with pytest.raises(exceptions.OutputNotFound):
        m.stderr[0]
    with pytest.raises(exceptions.TimeoutError):
        m.stdout.get(0, timeout=0)
    gate.touch()
    assert m.stdout.get(0, timeout=T) == ""


@pytest.mark.parametrize("call", [
    lambda m: m.get(0, timeout=datetime.timedelta(milliseconds=50)),
    lambda m: m.wait(timeout=datetime.timedelta(milliseconds=50)),
    lambda m: list(m.iter(timeout=datetime.timedelta(milliseconds=50))),
    lambda m: list(m.iter_as_available(timeout=datetime.timedelta(milliseconds=50))),
    lambda m: m.stdout.get(0, timeout=datetime.timedelta(milliseconds=50)),
    lambda m: m.output_files.get(0, timeout=datetime.timedelta(milliseconds=50)),
    lambda m: m.get_err(0, timeout=datetime.timedelta(milliseconds=50)),
])
def test_every_timeout_takes_a_timedelta(tmp_path, call):
    gate, m = gate_map(tmp_path, 1, "timedelta")
    with pytest.raises(exceptions.TimeoutError, match="0.05 s"):
        call(m)
    gate.touch()


def test_a_timeout_of_the_wrong_type_is_named(tmp_path):
    gate, m = gate_map(tmp_path, 1, "badtimeout")
    with pytest.raises(TypeError, match="timedelta"):
        m.get(0, timeout="soon")
    gate.touch()


def test_indexing_a_held_component_raises_map_component_held(tmp_path):
    gate, m = gate_map(tmp_path, 2, "heldindex")
    m.hold(components=[0])
    wait_until(lambda: m.component_statuses[0] is ComponentStatus.HELD, T, message="component 0 held")
    with pytest.raises(exceptions.MapComponentHeld):
        m[0]
    with pytest.raises(exceptions.OutputNotFound):
        m[1]
    gate.touch()
    m.remove()


def test_rerun_of_a_component_outside_the_map_cannot_rerun():
    m = htmap.map(funcs.double, [1, 2], tag="rerunout")
    m.wait(timeout=T)
    with pytest.raises(exceptions.CannotRerunComponents, match="not in the map"):
        m.rerun([5])
    result = run_cli("rerun", "components", "rerunout", "5")
    assert result.exit_code == 1 and "cannot rerun" in result.stderr


def test_rerun_deletes_earlier_output_files():
    m = htmap.map(funcs.double, [1, 2], tag="stalefiles")
    m.wait(timeout=T)
    stale = m.output_files[0] / "stale.txt"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("from the first run")
    kept = m.output_files[1] / "kept.txt"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("not rerun")
    m.rerun([0])
    m.wait(timeout=T)
    assert not stale.exists() and kept.exists()


def test_retag_to_a_taken_tag_raises_cannot_retag_map():
    a = htmap.map(funcs.double, [1], tag="first")
    htmap.map(funcs.double, [1], tag="second")
    with pytest.raises(exceptions.CannotRetagMap):
        a.retag("second")
    with pytest.raises(exceptions.TagAlreadyExists):
        a.retag("second")
    with pytest.raises(exceptions.CannotRetagMap):
        a.retag("has space")
    assert a.tag == "first"


def _failing_inputs():
    yield 1
    raise RuntimeError("the source of inputs broke")


def test_a_failing_input_iterator_raises_the_users_own_exception(isolated_htmap):
    with pytest.raises(RuntimeError, match="the source of inputs broke") as info:
        htmap.map(funcs.double, _failing_inputs(), tag="brokeninputs")
    assert any("nothing of the map was kept" in n for n in getattr(info.value, "__notes__", []))
    assert htmap.get_tags() == ()
    maps = isolated_htmap / "maps"
    assert not maps.exists() or list(maps.iterdir()) == []


def test_get_err_of_a_success_raises_expected_error():
    m = htmap.map(funcs.double, [1], tag="expected")
    m.wait(timeout=T)
    with pytest.raises(exceptions.ExpectedError):
        m.get_err(0)


PUBLIC_AFTER_REMOVE = [name for name in dir(htmap.Map) if not name.startswith("_")
                       and name not in ("load", "tag", "uid", "exists")]


def test_every_public_member_raises_after_remove():
    m = htmap.map(funcs.double, [1, 2], tag="removed")
    m.wait(timeout=T)
    m.remove()
    assert not m.exists
    for name in PUBLIC_AFTER_REMOVE + ["__len__", "__iter__", "__getitem__", "__contains__"]:
        with pytest.raises(exceptions.MapWasRemoved):
            _call_public(m, name)

def _call_public(m, name):
    member = getattr(m, name)
    if callable(member):
        args = {"count": (2,), "index": (2,), "__getitem__": (0,), "__contains__": (0,),
                "get": (0,), "get_err": (0,), "retag": ("x",), "set_memory": (10,),
                "set_disk": (10,), "set_runtime": (10,)}.get(name, ())
        result = member(*args)
        if inspect.isgenerator(result) or name == "__iter__":
            next(iter(result))


def test_every_public_member_raises_after_another_process_removed_the_map(tmp_path):
    import subprocess
    import sys

    m = htmap.map(funcs.double, [1, 2], tag="removedelsewhere")
    m.wait(timeout=T)
    subprocess.run([sys.executable, "-m", "htmap", "remove", "removedelsewhere"], check=True,
                   capture_output=True, cwd=str(tmp_path),
                   env={**__import__("os").environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parent.parent)})
    failures = []
    for name in PUBLIC_AFTER_REMOVE + ["__len__", "__iter__", "__getitem__", "__contains__"]:
        try:
            _call_public(m, name)
        except exceptions.MapWasRemoved:
            continue
        except Exception as e:
            failures.append(f"{name}: {type(e).__name__}: {e}")
        else:
            failures.append(f"{name}: no error")
    assert not failures, failures
