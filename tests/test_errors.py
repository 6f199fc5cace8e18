"""Errors: Python exceptions become reports; components that die say why."""
import os
import subprocess
import sys

import cloudpickle
import pytest

import htmap
from htmap import ComponentStatus, exceptions
from tests import funcs

T = 60


def test_exception_becomes_component_error_with_report():
    m = htmap.map(funcs.fail_on, range(5), tag="fails")
    with pytest.raises(exceptions.MapComponentError) as info:
        m.wait(timeout=T)
    assert "component input 3 is bad" in str(info.value)
    m.wait(timeout=T, errors_ok=True)
    assert m.component_statuses[3] is ComponentStatus.ERRORED
    assert list(m.errors) == [3] and m.errors[3].component == 3
    err = m.get_err(3)
    assert err.exception_msg == "component input 3 is bad"
    assert err.exception_type.endswith("ValueError")
    frame = err.stack_summary[-1]
    assert "raise ValueError" in frame["line"]
    assert frame["locals"]["x"] == "3"
    assert len(frame["locals"]["local_note"]) < 300  # long reprs are shortened
    assert err.node_info["hostname"] and err.python_info["version"]
    assert isinstance(err.scratch_dir_contents, list)
    report = err.report()
    assert "component 3 of map fails" in report and "ValueError" in report and "raise ValueError" in report
    assert m.error_reports() == [report]
    assert "ValueError: component input 3 is bad" in m.stderr[3]  # traceback also in stderr
    with pytest.raises(exceptions.MapComponentError):
        m.get(3)
    with pytest.raises(exceptions.MapComponentError):
        list(m)
    with pytest.raises(exceptions.InvalidOutputStatus):
        m.get_err(0)
    assert m.get(4) == 4


def test_errors_never_block_on_unfinished_components(tmp_path):
    m = htmap.map(funcs.wait_for_file, [str(tmp_path / "never")], tag="blocked")
    assert m.errors_so_far == {}
    m.remove()


@pytest.mark.engines("local", "slurm")  # on HTCondor a dead runner holds the job, saying why (tests/live_htcondor/test_live_control.py)
@pytest.mark.parametrize("func, expected", [
    (funcs.exit_hard, "exited with code 3"),
    (funcs.kill_self, "signal 9"),
    (funcs.segfault, "SIGSEGV"),
])
def test_component_dying_without_output_says_why(func, expected):
    m = htmap.map(func, [3], tag="dies")
    m.wait(timeout=T, errors_ok=True)
    assert m.component_statuses[0] is ComponentStatus.ERRORED
    err = m.get_err(0)
    assert expected in err.exception_msg
    assert "died without output" in err.report()


def test_unpicklable_return_value_is_reported():
    m = htmap.map(funcs.unpicklable, [1], tag="nopickle")
    m.wait(timeout=T, errors_ok=True)
    err = m.get_err(0)
    assert "pickle" in (err.exception_msg + err.exception_type).lower()
    assert "lock" in err.exception_msg.lower()


@pytest.mark.engines("local", "slurm")  # on HTCondor a dead runner holds the job, saying why (tests/live_htcondor/test_live_control.py)
def test_stderr_tail_is_in_death_report():
    m = htmap.map(funcs.exit_after_print, ["last words before dying"], tag="tail")
    m.wait(timeout=T, errors_ok=True)
    err = m.get_err(0)
    assert "last words before dying" in err.report()


def test_runner_without_cloudpickle_writes_a_report(tmp_path):
    """The runner on a Python with no cloudpickle (``-S`` hides site-packages) still reports."""
    from htmap import jobfiles, runner

    func = tmp_path / "func"
    func.write_bytes(cloudpickle.dumps(funcs.double))
    inp = tmp_path / "0.in"
    inp.write_bytes(cloudpickle.dumps(((1,), {})))
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-S", runner.__file__, str(func), str(inp), "0", str(out)],
                          capture_output=True, text=True, env=env, timeout=T)
    assert proc.returncode == 0  # the runner itself did its job: it wrote a report
    kind, report = jobfiles.read_output(out / "0.out")
    assert kind == "ERR"
    assert "cloudpickle" in report["exception_msg"]
    assert "install" in report["exception_msg"]


def test_error_report_of_a_script_function_shows_its_source(tmp_path):
    """Functions from a script are pickled by value; the report still shows their source lines."""
    script = tmp_path / "analysis.py"
    script.write_text(
        "import htmap\n"
        "htmap.settings['ENGINE'] = 'local'\n"
        "def helper(y):\n"
        "    raise ValueError('bad %d' % y)\n"
        "def f(x):\n"
        "    return helper(x + 1)\n"
        "m = htmap.map(f, [1], tag='from-script')\n"
        "m.wait(timeout=60, errors_ok=True)\n"
        "print(m.get_err(0).report())\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=T,
                         cwd=tmp_path).stdout
    assert f'File "{script}", line 6, in f' in out
    assert "return helper(x + 1)" in out
    assert "raise ValueError('bad %d' % y)" in out


@pytest.mark.parametrize("made_with, hinted", [("3.4.0", True), ("%d.%d.99" % sys.version_info[:2], False)])
def test_a_function_that_does_not_load_names_the_python_version_mismatch(tmp_path, made_with, hinted):
    """A map made with another Python (e.g. lxplus's 3.9 node python3 reading a 3.11 map) says so."""
    from htmap import jobfiles

    (tmp_path / "func").write_bytes(b"\x80\x05not a pickle of this Python")
    (tmp_path / "0.in").write_bytes(cloudpickle.dumps(((1,), {})))
    proc = subprocess.run([sys.executable, str(jobfiles.runner_path()), "func", "0.in", "0", "."], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HTMAP_SUBMIT_PYTHON": made_with})
    assert proc.returncode == 0, proc.stderr  # the failure is a report, not a crash
    kind, report = jobfiles.read_output(tmp_path / "0.out")
    assert kind == "ERR" and "could not load the function or input of component 0" in report["exception_msg"]
    hint = f"the map was made with Python {made_with} but this node runs Python"
    assert (hint in report["exception_msg"]) is hinted
    if hinted:
        assert "DELIVERY_METHOD 'transplant'" in report["exception_msg"] and hint in proc.stderr
