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


# top-level functions and the keyword parameters 0.6 scripts pass
FUNCTIONS_0_6 = {
    "map": ["func", "args", "map_options", "tag", "quiet"],
    "starmap": ["func", "args", "kwargs", "map_options", "tag", "quiet"],
    "build_map": ["func", "map_options", "tag"], "load": ["tag"], "load_maps": ["pattern"],
    "remove": ["tag", "not_exist_ok"], "clean": ["all"], "get_tags": ["pattern"],
    "status": ["maps", "include_state", "include_meta"],
    "status_json": ["maps", "include_state", "include_meta", "compact"],
    "status_csv": ["maps", "include_state", "include_meta"],
    "register_delivery_method": ["name", "descriptors_func", "setup_func"], "mapped": ["map_options"],
    "transplants": [], "transplant_info": [], "checkpoint": [], "transfer_output_files": [],
}


@pytest.mark.parametrize("name,params", sorted(FUNCTIONS_0_6.items()))
def test_top_level_functions_take_the_keywords_of_0_6(name, params):
    accepted = inspect.signature(getattr(htmap, name)).parameters
    missing = [p for p in params if p not in accepted]
    assert not missing, f"htmap.{name} does not take {missing} (HTMap 0.6 did)"


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


# -- the command line ------------------------------------------------------------------

# every command of HTMap 0.6 with the options (and arguments) its scripts pass
CLI_0_6 = {
    (): ["-v", "--verbose", "--version", "-h", "--help"],
    ("tags",): ["-p", "--pattern"],
    ("status",): ["--state", "--no-state", "--meta", "--no-meta", "--format", "--live", "--no-live",
                  "--color", "--no-color"],
    ("clean",): ["--all"],
    ("wait",): ["tags", "-p", "--pattern", "--all"],
    ("remove",): ["tags", "-p", "--pattern", "--all", "--force"],
    ("hold",): ["tags", "-p", "--pattern", "--all"],
    ("release",): ["tags", "-p", "--pattern", "--all"],
    ("pause",): ["tags", "-p", "--pattern", "--all"],
    ("resume",): ["tags", "-p", "--pattern", "--all"],
    ("vacate",): ["tags", "-p", "--pattern", "--all"],
    ("reasons",): ["tags", "-p", "--pattern", "--all"],
    ("errors",): ["tags", "-p", "--pattern", "--all", "--limit"],
    ("stdout",): ["tag", "component", "--timeout"],
    ("stderr",): ["tag", "component", "--timeout"],
    ("components",): ["tag", "--status", "--color", "--no-color"],
    ("rerun", "components"): ["tag", "components"],
    ("rerun", "map"): ["tags", "-p", "--pattern", "--all"],
    ("retag",): ["tag", "new"],
    ("version",): [],
    ("settings",): ["--user"],
    ("set",): [],
    ("transplants", "info"): [],
    ("transplants", "remove"): ["index"],
    ("edit", "memory"): ["tag", "memory", "--unit"],
    ("edit", "disk"): ["tag", "disk", "--unit"],
    ("path",): [],
    ("logs",): ["--view", "--no-view"],
    ("autocompletion",): ["--shell", "--force", "--destination"],
}


def _command(path):
    from htmap.cli import cli

    command = cli
    for name in path:
        command = command.commands.get(name)
        assert command is not None, f"`htmap {' '.join(path)}` (HTMap 0.6) is missing"
    return command


@pytest.mark.parametrize("path,options", sorted(CLI_0_6.items()))
def test_every_command_and_option_of_0_6_exists(path, options):
    command = _command(path)
    accepted = set()
    for param in command.params:
        accepted.update(param.opts + param.secondary_opts)
        accepted.add(param.name)
    if not path:
        accepted.update(["-h", "--help", "--version"])
    missing = [o for o in options if o not in accepted]
    assert not missing, f"`htmap {' '.join(path)}` does not take {missing} (HTMap 0.6 did)"


@pytest.mark.parametrize("path", [p for p in CLI_0_6 if p])
def test_every_command_of_0_6_has_help(path):
    result = run_cli(*path, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_components_prints_one_pair_per_line_and_numbers_on_one_line():
    m = htmap.starmap(funcs.fail_on, args=[(x,) for x in range(11)], kwargs=[{"bad": 3}] * 11, tag="pairs")
    m.wait(timeout=T, errors_ok=True)
    lines = run_cli("components", "pairs").stdout.splitlines()
    assert lines[0] == " 0 COMPLETED" and lines[3] == " 3 ERRORED" and lines[10] == "10 COMPLETED"
    assert run_cli("components", "pairs", "--status", "errored").stdout == "3\n"
    both = run_cli("components", "pairs", "--status", "ERRORED", "--status", "completed").stdout
    assert both == " ".join(str(c) for c in range(11)) + "\n"


def test_status_names_are_upper_case_in_help_and_errors():
    htmap.map(funcs.double, [1], tag="upper")
    assert "[UNKNOWN|" in run_cli("components", "--help").stdout
    result = run_cli("components", "upper", "--status", "wizbang")
    assert result.exit_code == 2
    assert result.stderr.startswith("ERROR: wizbang") and "ERRORED" in result.stderr


def test_status_shows_components_and_fits_80_columns():
    htmap.map(funcs.double, range(12), tag="a-longer-tag-for-the-table").wait(timeout=T)
    out = run_cli("status", env={"COLUMNS": "80"}).stdout
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "Components" in out and " 12 " in out
    chosen = run_cli("status", "--columns", "memory,total_runtime", env={"COLUMNS": "80"}).stdout
    assert chosen.splitlines()[0].split() == ["Tag", "Max", "Memory", "Total", "Runtime"]
    wide = run_cli("status", env={"COLUMNS": "300"}).stdout
    assert "Total Runtime" in wide and "SUSPENDED" in wide
    bad = run_cli("status", "--columns", "colour")
    assert bad.exit_code == 2 and "colour" in bad.stderr and "total_runtime" in bad.stderr


@pytest.mark.parametrize("fmt", ["json", "json_compact", "csv"])
def test_status_live_with_another_format_says_error(fmt):
    result = run_cli("status", "--live", "--format", fmt)
    assert result.exit_code == 2 and "ERROR" in result.stderr


def test_status_no_live_and_logs_no_view_are_accepted():
    htmap.map(funcs.double, [1], tag="nolive")
    assert run_cli("status", "--no-live").exit_code == 0
    result = run_cli("logs", "--no-view")
    assert result.exit_code == 0 and result.stdout.strip().endswith(".log")


def test_autocompletion_adds_clicks_completion_line_once(tmp_path):
    rc = tmp_path / "bashrc"
    assert run_cli("autocompletion", "--shell", "bash", "--destination", rc).exit_code == 0
    assert run_cli("autocompletion", "--shell", "bash", "--destination", rc).exit_code == 0
    assert rc.read_text().count("_HTMAP_COMPLETE=bash_source htmap") == 1
    run_cli("autocompletion", "--shell", "bash", "--destination", rc, "--force")
    assert rc.read_text().count("_HTMAP_COMPLETE=bash_source htmap") == 2


def test_version_says_htmap_version():
    assert run_cli("--version").stdout.startswith(f"htmap version {htmap.__version__}")
    assert run_cli("version").stdout.splitlines()[0] == f"htmap version {htmap.__version__}"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_stdout_and_stderr_commands_wait_for_the_component(tmp_path, monkeypatch, stream):
    import threading

    from htmap import maps

    gate, m = gate_map(tmp_path, 1, f"waits-{stream}")
    waiting = threading.Event()
    original = maps.Poller.sleep

    def sleep(self, progressed=False):
        waiting.set()
        original(self, progressed)

    monkeypatch.setattr(maps.Poller, "sleep", sleep)
    results = []
    # without --timeout, as 0.6 scripts call it: wait as long as it takes
    thread = threading.Thread(target=lambda: results.append(run_cli(stream, m.tag, 0)), daemon=True)
    thread.start()
    wait_until(lambda: waiting.is_set() or not thread.is_alive(), T, message="the command to wait")
    gate.touch()
    thread.join(T)
    assert waiting.is_set() and results[0].exit_code == 0, results[0].stderr
    assert run_cli(stream, m.tag, 0, "--timeout", "0").exit_code == 0



def test_status_json_and_csv_keep_the_fields_of_0_6():
    import csv
    import io
    import json

    m = htmap.starmap(funcs.fail_on, args=[(x,) for x in range(4)], kwargs=[{"bad": 3}] * 4, tag="fields")
    m.wait(timeout=T, errors_ok=True)
    for text in (htmap.status_json(), run_cli("status", "--format", "json").stdout):
        row = json.loads(text)["fields"]
        assert row["component_status_counts"] == {"held": 0, "errored": 1, "idle": 0, "running": 0, "completed": 3}
        assert row["max_memory_usage"] == row["max_memory_mb"] * 1024 * 1024
        assert row["local_disk_usage"] > 0 and row["total_runtime"] >= row["max_runtime"] >= 0
    for text in (htmap.status_csv(), run_cli("status", "--format", "csv").stdout):
        (row,) = csv.DictReader(io.StringIO(text))
        assert (row["completed"], row["errored"], row["held"]) == ("3", "1", "0")
        assert {"local_disk_usage", "max_memory_usage", "max_runtime", "total_runtime"} <= set(row)


def test_maps_sort_by_tag_and_status_reads_as_in_0_6():
    b = htmap.map(funcs.double, [1], tag="b-map")
    a = htmap.map(funcs.double, [1, 2], tag="a-map")
    assert sorted([b, a]) == [a, b] and [m.tag for m in sorted(htmap.load_maps())] == ["a-map", "b-map"]
    a.wait(timeout=T)
    assert a.status() == "Map a-map (2 components): HELD = 0 | ERRORED = 0 | IDLE = 0 | RUNNING = 0 | COMPLETED = 2"
