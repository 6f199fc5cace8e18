"""The htmap command, through click's test runner, against real maps on the local engine."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import htmap
from htmap import cli as cli_module
from htmap.cli import cli
from htmap.state import ComponentStatus
from tests.funcs import chatty as noisy, double
from tests.helpers import run_cli, wait_until

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# -- functions the tests map (module level, so workers can import them) ----------------

def odd_fails(x):
    if x % 2:
        raise ValueError(f"odd input {x}")
    return x


def gated(gate):
    """Runs until the file ``gate`` exists (the test opens the gate), then returns."""
    deadline = time.time() + 60
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.01)
    return gate


def needs_flag(flag):
    if not os.path.exists(flag):
        raise RuntimeError("the flag file is missing")
    return "ok"


# -- helpers ----------------------------------------------------------------------------

run = run_cli


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.exit_code == 0, (args, result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def statuses(m):
    return {s: len(cs) for s, cs in m.components_by_status().items()}


def wait_status(m, status, count, timeout=30):
    wait_until(lambda: statuses(m).get(status, 0) == count, timeout, message=f"{count} {status.value} in {m.tag}")


@pytest.fixture
def finished_maps():
    """Two finished maps: ``fine`` (all completed) and ``mixed`` (components 1 and 3 errored)."""
    fine = htmap.map(double, range(3), tag="fine")
    mixed = htmap.map(odd_fails, range(4), tag="mixed")
    fine.wait(timeout=60)
    mixed.wait(timeout=60, errors_ok=True)
    return fine, mixed


# -- the command itself -----------------------------------------------------------------

def test_help_version_and_entry_points():
    for flag in ("--help", "-h"):
        out = ok(flag).stdout
        for command in ("status", "wait", "rerun", "edit", "info", "set", "plot", "components"):
            assert command in out
    assert ok("--version").stdout == f"htmap version {htmap.__version__}\n"
    assert ok("version").stdout.startswith(f"htmap version {htmap.__version__}\n")
    assert "components TAG 0 3 7" in ok("rerun", "components", "-h").stdout
    # unknown command: usage error with a suggestion
    result = run("stauts")
    assert result.exit_code == 2 and "status" in result.stderr

    proc = subprocess.run([sys.executable, "-m", "htmap", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == f"htmap version {htmap.__version__}\n"
    script = shutil.which("htmap")
    if script:  # the console script from pyproject, when installed
        proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == f"htmap version {htmap.__version__}"


def test_tags_patterns_and_stdin(monkeypatch):
    for tag in ("a-1", "a-2", "b"):
        htmap.map(double, [1], tag=tag)
    assert ok("tags").stdout == "a-1\na-2\nb\n"
    assert ok("tags", "-p", "a-*").stdout == "a-1\na-2\n"
    assert ok("tags", "-p", "zzz*").stdout == ""

    # -p given: standard input is not read, even when it holds tags
    result = ok("status", "--format", "json", "-p", "a-*", input="b\n")
    assert set(json.loads(result.stdout)) == {"a-1", "a-2"}

    # tags on standard input (not a terminal)
    result = ok("remove", input="a-1\nb\n")
    assert "Removed map a-1" in result.stdout and "Removed map b" in result.stdout
    assert htmap.get_tags() == ("a-2",)

    # a pattern that matches nothing: a warning, nothing done, success
    result = ok("remove", "-p", "zzz*")
    assert "WARNING" in result.stderr and "zzz*" in result.stderr

    # with a terminal on standard input: -p works, and no selection at all is a usage error
    monkeypatch.setattr(cli_module, "_stdin_is_tty", lambda: True)
    monkeypatch.setattr(cli_module, "_read_stdin_tags", lambda: pytest.fail("stdin read from a terminal"))
    assert set(json.loads(ok("status", "--format", "json", "-p", "a-*").stdout)) == {"a-2"}
    result = run("remove")
    assert result.exit_code == 2 and "no maps selected" in result.stderr
    assert htmap.get_tags() == ("a-2",)


def test_unknown_tags_fail_with_closest_tags():
    htmap.map(double, [1], tag="alpha")
    commands = [
        ["status", "alpah"], ["wait", "alpah"], ["remove", "alpah"], ["hold", "alpah"], ["release", "alpah"],
        ["errors", "alpah"], ["reasons", "alpah"], ["components", "alpah"], ["stdout", "alpah", "0"],
        ["stderr", "alpah", "0"], ["retag", "alpah", "x"], ["path", "alpah"], ["rerun", "map", "alpah"],
        ["rerun", "components", "alpah", "0"], ["edit", "memory", "alpah", "1"], ["plot", "alpah"],
    ]
    for args in commands:
        result = run(*args)
        assert result.exit_code == 1, args
        first = result.stderr.splitlines()[0]
        assert first.startswith("ERROR: no map with tag alpah"), (args, result.stderr)
        assert "alpha" in first and "Traceback" not in result.stderr and result.stdout == ""

    # one unknown tag stops the command before it touches the others
    assert run("remove", "alpha", "nosuch").exit_code == 1
    assert htmap.get_tags() == ("alpha",)

    result = run("status", "bad/tag")
    assert result.exit_code == 1 and result.stderr.startswith("ERROR: invalid tag")


# -- status -------------------------------------------------------------------------------

IDENTITY = ["tag", "engine", "transient", "components"]
STATE = ["IDLE", "RUNNING", "HELD", "SUSPENDED", "COMPLETED", "ERRORED", "REMOVED"]
META = ["local_data_bytes", "max_memory_mb", "max_runtime_s", "total_runtime_s"]
# HTMap 0.6's fields, after ours
STATE_0_6 = ["held", "errored", "idle", "running", "completed"]
META_0_6 = ["local_disk_usage", "max_memory_usage", "max_runtime", "total_runtime"]


def test_status_machine_formats(finished_maps):
    data = json.loads(ok("status", "--format", "json").stdout)
    assert set(data) == {"fine", "mixed"}
    assert set(data["mixed"]) == set(IDENTITY + STATE + META + ["component_status_counts"] + META_0_6)
    assert data["fine"]["COMPLETED"] == 3 and data["fine"]["components"] == 3
    assert (data["mixed"]["COMPLETED"], data["mixed"]["ERRORED"]) == (2, 2)
    assert data["mixed"]["engine"] == "local" and data["mixed"]["transient"] is False
    assert data["mixed"]["local_data_bytes"] > 0 and data["mixed"]["total_runtime_s"] >= 0

    compact = ok("status", "--format", "json_compact").stdout
    assert compact.count("\n") == 1 and json.loads(compact) == data

    rows = list(csv.DictReader(io.StringIO(ok("status", "--format", "csv").stdout)))
    assert [r["tag"] for r in rows] == ["fine", "mixed"]
    assert list(rows[0]) == IDENTITY + STATE + META + STATE_0_6 + META_0_6
    assert rows[1]["ERRORED"] == "2" and rows[1]["transient"] == "false"

    header = next(csv.reader(io.StringIO(ok("status", "--format", "csv", "--no-state").stdout)))
    assert header == IDENTITY + META + META_0_6
    header = next(csv.reader(io.StringIO(ok("status", "--format", "csv", "--no-meta").stdout)))
    assert header == IDENTITY + STATE + STATE_0_6
    only = json.loads(ok("status", "mixed", "--format", "json", "--no-meta", "--no-state").stdout)
    assert only == {"mixed": {"tag": "mixed", "engine": "local", "transient": False, "components": 4}}


def test_status_text_alignment_and_color(finished_maps, monkeypatch):
    htmap.map(double, [5]).wait(timeout=60)  # a transient map
    out = ok("status", "--columns", "components,idle,running,completed,errored,data").stdout
    assert "\x1b" not in out  # not a terminal: no colour
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["Tag", "Components", "IDLE"] and set(lines[1]) <= {"-", " "}
    table = lines[:5]
    assert len({len(line) for line in table}) == 1  # right-aligned last column: equal widths
    col = lines[0].index("COMPLETED") + len("COMPLETED")  # counts end under their header
    assert lines[2].startswith("fine") and lines[2][col - 1] == "3"
    assert lines[4].startswith("* ") and "transient" in lines[-1]

    assert "\x1b[" in ok("status", "--color").stdout
    monkeypatch.setattr(cli_module, "_stdout_is_tty", lambda: True)
    assert "\x1b[" in ok("status").stdout  # a terminal: colour
    assert "\x1b" not in ok("status", env={"NO_COLOR": "1"}).stdout
    assert "\x1b" not in ok("status", "--no-color").stdout
    assert "\x1b" not in ok("components", "mixed", env={"NO_COLOR": "1"}).stdout


def test_status_live_redraws_in_place(finished_maps):
    out = ok("status", "--live", "-n", "3", "--interval", "0.05", "--no-meta").stdout
    assert out.count("Tag ") == 3
    assert out.count("\x1b[4F") == 2  # moved up over the 4-line table twice
    result = run("status", "--live", "--format", "json")
    assert result.exit_code == 2 and "--live" in result.stderr


# -- wait, errors, components ---------------------------------------------------------------

def test_wait_reports_each_failed_component(finished_maps):
    result = ok("wait", "fine")
    assert result.stdout == "fine: all 3 components completed\n"

    result = run("wait", "mixed", "fine")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines == [
        "ERROR: map mixed component 1 errored: ValueError: odd input 1",
        "ERROR: map mixed component 3 errored: ValueError: odd input 3",
    ]
    assert "fine: all 3 components completed" in result.stdout

    errors = ok("errors", "mixed").stdout
    assert errors.count("Start error report for component") == 2 and "odd input 3" in errors
    assert ok("errors", "mixed", "--limit", "1").stdout.count("Start error report") == 1
    assert ok("errors", "fine").stdout == ""


def test_components(finished_maps):
    lines = ok("components", "mixed").stdout.splitlines()
    assert [line.split() for line in lines] == [["0", "COMPLETED"], ["1", "ERRORED"], ["2", "COMPLETED"],
                                                 ["3", "ERRORED"]]
    assert ok("components", "mixed", "--status", "errored").stdout == "1 3\n"
    assert ok("components", "mixed", "--status", "ERRORED", "--status", "completed").stdout == "0 1 2 3\n"
    result = ok("components", "mixed", "--status", "held")  # none: nothing printed, success
    assert result.stdout == "" and result.stderr == ""
    result = run("components", "mixed", "--status", "bogus")
    assert result.exit_code == 2 and "bogus" in result.stderr


def test_stdout_and_stderr():
    m = htmap.map(noisy, range(2), tag="noisy")
    m.wait(timeout=60)
    assert ok("stdout", "noisy", 1).stdout == "out 1\n"
    assert ok("stderr", "noisy", 0).stdout == "err 0\n"
    assert ok("stdout", "noisy", 0, "--timeout", 5).stdout == "out 0\n"
    result = run("stdout", "noisy", 7)
    assert result.exit_code == 1 and result.stderr.startswith("ERROR: component 7 is not in map")


def test_hold_reasons_release_and_timeouts(tmp_path):
    gate = tmp_path / "gate"
    m = htmap.map(gated, [str(gate)] * 2, tag="gated")
    assert ok("hold", "gated").stdout == "Held map gated\n"
    wait_status(m, ComponentStatus.HELD, 2)

    out = ok("reasons", "gated").stdout
    assert out.startswith("Map gated (2 holds)") and "held by the user" in out
    result = run("wait", "gated")  # held components stop wait, and are reported
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "ERROR: map gated component 0 is held: held by the user (htmap hold) (code 1)",
        "ERROR: map gated component 1 is held: held by the user (htmap hold) (code 1)",
    ]

    ok("release", "gated")
    wait_until(lambda: not statuses(m).get(ComponentStatus.HELD), 30, message="release")
    assert ok("reasons", "gated").stdout == ""
    result = run("wait", "gated", "--timeout", "0.2")
    assert result.exit_code == 124 and result.stderr.startswith("ERROR: timed out")
    result = run("stdout", "gated", 0, "--timeout", "0.1")
    assert result.exit_code == 124 and "timed out" in result.stderr

    gate.touch()
    assert ok("wait", "gated", "--timeout", 60).stdout == "gated: all 2 components completed\n"


def test_pause_resume_vacate(tmp_path):
    gate = tmp_path / "gate"
    m = htmap.map(gated, [str(gate)], tag="pv")
    wait_status(m, ComponentStatus.RUNNING, 1)
    assert ok("pause", "pv").stdout == "Paused map pv\n"
    wait_status(m, ComponentStatus.SUSPENDED, 1)
    assert ok("components", "pv").stdout.split() == ["0", "SUSPENDED"]
    ok("resume", "-c", 0, "pv")
    wait_status(m, ComponentStatus.RUNNING, 1)
    ok("vacate", "pv")
    events = Path(ok("path", "pv:events").stdout.strip())
    wait_until(lambda: "evicted" in events.read_text(), 30, message="eviction")
    wait_status(m, ComponentStatus.RUNNING, 1)  # it runs again
    gate.touch()
    ok("wait", "pv", "--timeout", 60)
    assert m.get(0) == str(gate)


def test_rerun(tmp_path):
    flag = tmp_path / "flag"
    m = htmap.map(needs_flag, [str(flag)] * 3, tag="rr")
    assert run("wait", "rr").exit_code == 1
    flag.touch()
    assert ok("rerun", "components", "rr", 2, 0).stdout == "Rerunning components 0, 2 of map rr\n"
    result = run("wait", "rr")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["ERROR: map rr component 1 errored: RuntimeError: the flag file is missing"]
    assert ok("rerun", "map", "rr").stdout == "Rerunning map rr\n"
    ok("wait", "rr", "--timeout", 60)
    assert list(m) == ["ok"] * 3

    result = run("rerun", "components", "rr", 7)
    assert result.exit_code == 1 and "cannot rerun components 7 of map rr: they are not in the map" in result.stderr
    assert run("rerun", "components", "rr").exit_code == 2  # needs component numbers

    gate = tmp_path / "gate"
    htmap.map(gated, [str(gate)], tag="busy")
    result = run("rerun", "components", "busy", 0)
    assert result.exit_code == 1 and result.stderr.startswith("ERROR: cannot rerun")
    gate.touch()


def test_retag_remove_clean():
    htmap.map(double, [1], tag="old").wait(timeout=60)
    assert ok("retag", "old", "new").stdout == "Retagged map old to new\n"
    assert htmap.get_tags() == ("new",)
    result = run("retag", "new", "bad/tag")
    assert result.exit_code == 1 and result.stderr.startswith("ERROR: invalid tag")
    htmap.map(double, [1], tag="other")
    result = run("retag", "new", "other")
    assert result.exit_code == 1 and "already exists" in result.stderr

    transient = htmap.map(double, [2])
    assert ok("clean").stdout == f"Removed map {transient.tag}\n"
    assert ok("clean").stdout == "No transient maps to clean\n"
    assert htmap.get_tags() == ("new", "other")
    assert ok("remove", "new").stdout == "Removed map new\n"
    assert ok("clean", "--all").stdout == "Removed map other\n"
    assert htmap.get_tags() == ()


def test_path_and_logs(isolated_htmap):
    m = htmap.map(double, [1], tag="p")
    m.wait(timeout=60)
    directory = Path(ok("path", "p").stdout.strip())
    assert directory.is_dir() and ok("path", "p:map").stdout.strip() == str(directory)
    tag_file = Path(ok("path", "p:tag").stdout.strip())
    assert tag_file.read_text().strip() == directory.name
    for part in ("logs", "inputs", "outputs"):
        p = Path(ok("path", f"p:{part}").stdout.strip())
        assert p.is_dir() and p.parent == directory
    assert Path(ok("path", "p:events").stdout.strip()).is_file()
    result = run("path", "p:bogus")
    assert result.exit_code == 2 and "bogus" in result.stderr

    log = Path(ok("logs").stdout.strip())
    assert log.name == "supervisor.log" and str(log).startswith(str(isolated_htmap))
    assert ok("logs", "--view").exit_code == 0


def test_settings_and_set():
    rc = Path.home() / ".htmaprc"
    result = run("settings", "--user")
    assert result.exit_code == 1 and result.stderr.startswith("ERROR: you have no settings file")

    ok("set", "LOCAL.MAX_WORKERS", "3")
    ok("set", "TRANSPLANT.ASSUME_EXISTS", "true")
    ok("set", "WAIT_TIME", "2.5")
    ok("set", "DOCKER.IMAGE", "python:3.12")
    ok("set", "HTCONDOR.SCHEDULER", "1234")  # a string setting stays a string
    ok("set", "MAP_OPTIONS.request_cpus", "2")
    ok("set", "MAP_OPTIONS.request_memory", "2GB")
    ok("set", "--string", "MAP_OPTIONS.foo", "7")
    result = ok("set", "SOMETHING_NEW", "5")
    assert "WARNING" in result.stderr and "SOMETHING_NEW" in result.stderr

    stored = tomllib.loads(rc.read_text())
    assert stored["LOCAL"] == {"MAX_WORKERS": 3}
    assert stored["TRANSPLANT"] == {"ASSUME_EXISTS": True}
    assert stored["WAIT_TIME"] == 2.5 and stored["SOMETHING_NEW"] == 5
    assert stored["DOCKER"] == {"IMAGE": "python:3.12"} and stored["HTCONDOR"] == {"SCHEDULER": "1234"}
    assert stored["MAP_OPTIONS"] == {"request_cpus": 2, "request_memory": "2GB", "foo": "7"}

    for args in (["LOCAL.MAX_WORKERS", "many"], ["TRANSPLANT.ASSUME_EXISTS", "3"], ["LOCAL", "3"]):
        result = run("set", *args)
        assert result.exit_code == 1 and result.stderr.startswith("ERROR: "), args
    assert tomllib.loads(rc.read_text()) == stored  # failed sets change nothing

    assert tomllib.loads(ok("settings", "--user").stdout) == stored
    everything = tomllib.loads(ok("settings").stdout)
    assert everything["ENGINE"] == "local" and "LOCAL" in everything


def test_info(isolated_htmap):
    out = ok("info").stdout
    assert "Engine:" in out and "local" in out and str(isolated_htmap) in out
    data = json.loads(ok("info", "--json").stdout)
    assert data["engine"] == "local" and data["htmap_dir"] == str(isolated_htmap)
    assert [e["engine"] for e in data["engines"]][-1] == "local"
    assert data["engines"][-1]["available"] is True
    assert set(data["clusters"]) == {"htcondor", "slurm"}


def test_edit(tmp_path):
    gate = tmp_path / "gate"
    htmap.map(gated, [str(gate)], tag="e")
    assert ok("edit", "memory", "e", 2, "--unit", "GB").stdout == "Set the memory request of map e to 2 GB\n"
    assert ok("edit", "disk", "e", 500, "--unit", "mb").stdout == "Set the disk request of map e to 500 MB\n"
    assert run("edit", "disk", "e", 1, "--unit", "TB").exit_code == 2
    assert run("edit", "memory", "e", 0).exit_code == 2
    gate.touch()


def test_real_process_with_piped_stdin(isolated_htmap):
    for tag in ("pipe-a", "pipe-b"):
        htmap.map(double, [1], tag=tag).wait(timeout=60)
    env = {**os.environ, "HTMAP_DIR": str(isolated_htmap), "HTMAP_ENGINE": "local"}
    proc = subprocess.run([sys.executable, "-m", "htmap", "remove"], input="pipe-a\n", capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Removed map pipe-a\n"
    proc = subprocess.run([sys.executable, "-m", "htmap", "status", "--format", "json"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and set(json.loads(proc.stdout)) == {"pipe-b"}
    proc = subprocess.run([sys.executable, "-m", "htmap", "wait", "nosuch"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("ERROR: no map with tag nosuch")


def test_shell_completion_and_verbose():
    htmap.map(double, [1], tag="complete-me")

    def complete(words, cword):
        try:
            runner = CliRunner(mix_stderr=False)
        except TypeError:
            runner = CliRunner()
        env = {"_HTMAP_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        result = runner.invoke(cli, [], env=env, prog_name="htmap")
        assert result.exit_code == 0, result.stderr
        return result.stdout.split()

    assert complete("htmap sta", 1) == ["plain,status"]
    assert complete("htmap status comp", 2) == ["plain,complete-me"]
    assert complete("htmap path complete-me:ev", 2) == ["plain,complete-me:events"]

    result = run("-v", "status", "nosuch")
    assert result.exit_code == 1 and "ERROR: no map with tag nosuch" in result.stderr
