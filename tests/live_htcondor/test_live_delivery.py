"""What users rely on, on the live pool, for each delivery method that runs there: error reports
from the node, output files and remaps, rerun/retag/remove, and the seed scenario of CERN's page
(a function wrapping a shell script shipped as a fixed input file, with JobFlavour and a bar)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import htcondor2
import pytest

import htmap
from htmap import ComponentStatus as S
from tests import funcs

from .conftest import job_ads

METHODS = ["assume", "shared", "transplant"]


@pytest.fixture(params=METHODS)
def delivery(request, tmp_path):
    htmap.settings["DELIVERY_METHOD"] = request.param
    if request.param == "transplant":
        htmap.settings["TRANSPLANT.DIR"] = str(tmp_path.parent / "transplants")  # packed once per run
    return request.param


def run_script(seed):
    """The seed scenario's mapped function: run the shipped script, check its status, keep its output."""
    import subprocess
    proc = subprocess.run(["sh", "analysis.sh", str(seed)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"analysis.sh failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout.strip()


def test_seed_scenario_script_with_job_flavour_and_progress_bar(delivery, tmp_path, capsys):
    script = tmp_path / "analysis.sh"
    script.write_text('if [ "$1" = 3 ]; then echo "bad seed" >&2; exit 4; fi\necho "seed $1 -> $(($1 * 2))"\n')
    m = htmap.map(run_script, range(5), map_options=htmap.MapOptions(
        fixed_input_files=[str(script)], custom_options={"JobFlavour": '"espresso"'}))
    m.wait(timeout=180, show_progress_bar=True, errors_ok=True)
    assert "5/5" in capsys.readouterr().err  # the bar ran to the end
    assert [m.get(i) for i in (0, 1, 2, 4)] == ["seed 0 -> 0", "seed 1 -> 2", "seed 2 -> 4", "seed 4 -> 8"]
    err = m.get_err(3)
    assert err.exception_type == "RuntimeError" and "bad seed" in err.exception_msg
    report = err.report()
    assert "analysis.sh failed (4)" in report and "run_script" in report and "Node: " in report


def test_output_files_and_remaps_come_back(delivery, tmp_path):
    dest = tmp_path / "remapped"
    dest.mkdir()
    remaps = [{"top.txt": str(dest / f"top-{i}.txt")} for i in range(2)]
    m = htmap.map(funcs.make_outputs, range(2), map_options=htmap.MapOptions(output_remaps=remaps))
    assert list(m.iter(timeout=180)) == [0, 1]
    assert (m.output_files[1] / "sub" / "deep.txt").read_text() == "deep 1"
    assert (dest / "top-0.txt").read_text() == "top 0"


def test_rerun_retag_then_rerun_and_remove(delivery, tmp_path):
    counter = tmp_path / "count"
    m = htmap.map(funcs.fail_first_time, [str(counter)], tag="before")
    m.wait(timeout=180, errors_ok=True)
    assert m.component_statuses == [S.ERRORED]
    m.rerun()
    assert m.get(0, timeout=180) == 2
    m.retag("after")
    m.rerun()
    assert htmap.load("after").get(0, timeout=180) == 3
    uid = m.uid
    m.remove()
    assert "after" not in htmap.get_tags()
    assert htcondor2.Schedd().query(f'HTMapJobId == "{uid}" && JobStatus != 3', ["ClusterId"]) == []


def test_memory_hold_then_retry_with_more_memory():
    m = htmap.starmap(funcs.hold_memory, [(150, 25)], map_options=htmap.MapOptions(
        request_memory="100MB", max_retries=2, retry_memory_factor=2))
    assert m.get(0, timeout=300) == 150
    history = " ".join(str(h) for h in (m._state.history.get(0) or []))
    assert "more than its request_memory of 100 MB" in history, history
