"""Issue 13.1 and 13.3: what SITE = "cern" changes, without a pool."""
from __future__ import annotations

from pathlib import Path

import pytest

import htmap
from htmap import engines, exceptions
from htmap.engines.base import JobSet
from htmap.engines.htcondor.engine import HTCondorEngine

from . import funcs


def test_site_cern_makes_auto_mean_htcondor():
    htmap.settings["SITE"] = "cern"
    htmap.settings["ENGINE"] = "auto"
    engine, why = engines.resolve_name(htmap.settings["ENGINE"])
    assert engine == "htcondor" and "SITE" in why and "cern" in why
    from htmap.cli import gather_info

    assert gather_info()["engine"] == "htcondor"  # what `htmap info` shows


def test_site_cern_implies_htcondor_only_while_the_engine_is_not_chosen():
    htmap.settings["SITE"] = "cern"
    htmap.settings["ENGINE"] = "local"
    assert engines.resolve_name("local")[0] == "local"
    m = htmap.map(funcs.double, [1, 2], tag="at-cern-locally")
    assert m.engine == "local" and list(m.iter(timeout=60)) == [2, 4]


def test_without_a_site_auto_probes(monkeypatch):
    probed = []

    def probe(names=engines.AUTO_ORDER):
        probed.extend(names)
        return [(name, name == "slurm", "stand-in") for name in names]

    monkeypatch.setattr(engines, "probe", probe)
    htmap.settings["SITE"] = ""
    assert engines.site_engine() is None
    assert engines.resolve_name("auto") == ("slurm", "auto: stand-in") and probed
    htmap.settings["SITE"] = "cern"
    probed.clear()
    assert engines.resolve_name("auto")[0] == "htcondor" and not probed  # the site decides, nothing probed


def test_htmap_dir_on_eos_names_the_eos_submit_schedds(tmp_path):
    settings = {"SITE": "cern", "HTMAP_DIR": "/eos/user/j/jdoe/htmap", "DELIVERY_METHOD": "assume",
                "HTCONDOR": {}}
    job = JobSet(job_id="u", name="t", directory=tmp_path / "maps" / "u", num_components=1, settings=settings)
    with pytest.raises(exceptions.InvalidOption) as info:
        HTCondorEngine(settings, scheduler=object()).check(job)
    message = str(info.value)
    assert "/eos/user/j/jdoe/htmap" in message
    assert "EosSubmit" in message and "module load lxbatch/eossubmit" in message  # CERN's EOS schedds
    assert "AFS" in message and "root://eosuser.cern.ch//eos/" in message  # what to do instead


def run_sim(seed: int) -> str:
    """docs/cern.md section 8, verbatim: wrap an external program shipped with fixed_input_files."""
    import subprocess

    proc = subprocess.run(["bash", "sim.sh", str(seed)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sim.sh {seed} exited with status {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def test_the_guides_external_program_recipe_runs(tmp_path, monkeypatch):
    guide = (Path(__file__).resolve().parents[1] / "docs" / "cern.md").read_text()
    assert 'proc = subprocess.run(["bash", "sim.sh", str(seed)], capture_output=True, text=True)' in guide
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sim.sh").write_text('if [ "$1" = 2 ]; then echo "no convergence" >&2; exit 3; fi\necho "result $1"\n')
    m = htmap.map(run_sim, range(3), tag="sim",
                  map_options=htmap.MapOptions(fixed_input_files=["sim.sh"], max_runtime=2 * 3600))
    m.wait(timeout=60, errors_ok=True)
    assert m.get(0) == "result 0\n" and m.get(1) == "result 1\n"
    (error,) = m.errors.values()
    assert error.component == 2
    report = "\n".join(m.error_reports())
    assert "exited with status 3" in report and "no convergence" in report
