"""Submit descriptions and item data, per delivery method and option, accepted by the real htcondor2.Submit."""
from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

htcondor2 = pytest.importorskip("htcondor2", reason="the htcondor engine tests need: pip install 'htmap[htcondor]'")
classad2 = pytest.importorskip("classad2")

import htmap
from htmap import delivery as delivery_registry
from htmap import exceptions, jobfiles
from htmap.engines.htcondor import description as D
from htmap.engines.htcondor import delivery as hdelivery
from htmap.engines.htcondor.engine import HTCondorEngine

from .conftest import FIXTURES, RecordingScheduler, settings_with

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # execute "nodes" cannot import the tests


def submitted(engine_scheduler):
    kinds = [k for k, _ in engine_scheduler.calls]
    assert kinds.count("submit") == 1, kinds
    return next(v for k, v in engine_scheduler.calls if k == "submit")


def expand_for(desc, item, key):
    """What HTCondor makes of ``key`` for one item: the real Submit expands the macros."""
    sub = htcondor2.Submit(desc)
    for k, v in item.items():
        sub[k] = v
    return sub.expand(key)


def test_basic_description_is_htmap_shaped_and_accepted(make_job, scheduler):
    job = make_job([1, 2, 3])
    engine = HTCondorEngine(job.settings, scheduler=scheduler)
    engine.check(job)
    engine.submit(job)
    desc, items = submitted(scheduler)
    d, e = str(job.directory), str(job.engine_dir)
    expected = {
        "universe": "vanilla",
        "executable": f"{e}/htmap_exec.sh",
        "transfer_executable": "true",
        "arguments": "$(component)",
        "JobBatchName": "mymap",
        "log": f"{e}/events",
        "submit_event_notes": "$(component)",
        "submit_event_notes_attrs": "component",
        "output": f"{d}/logs/$(component).stdout",
        "error": f"{d}/logs/$(component).stderr",
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT_OR_EVICT",
        "initialdir": f"{d}/output_files",
        "MY.component": "$(component)",
        "MY.IsHTMapJob": "true",
        "MY.HTMapJobId": f'"{job.job_id}"',
        "transfer_input_files": f"{jobfiles.runner_path()},{jobfiles.runner_path().with_name('execution.py')},{d}/func,{e}/inputs/$(component).in,{d}/func.source.json",
        "transfer_output_files": "$(component).out,_htmap_user_transfer/$(component),_htmap_checkpoint",
        "transfer_output_remaps": f'"$(component).out={d}/outputs/$(component).out"',
        "on_exit_hold": "(ExitBySignal =?= true) || (ExitCode =!= 0 && ExitCode =!= 86)",
        "on_exit_hold_reason": D.Description(job, runner=Path("r"), delivery_descriptors={}, delivery_inputs=[]).build([0])[0]["on_exit_hold_reason"],
        "on_exit_hold_subcode": "ifThenElse(ExitBySignal =?= true, 4, 1)",
    }
    assert desc == expected
    assert items == [{"component": "0"}, {"component": "1"}, {"component": "2"}]
    sub = htcondor2.Submit(desc)  # the real bindings accept it
    assert sub["JobBatchName"] == "mymap"
    assert "/inputs/1.in," in expand_for(desc, items[1], "transfer_input_files")
    assert expand_for(desc, items[2], "transfer_output_remaps") == f'"2.out={d}/outputs/2.out"'
    # per-component input files hold exactly that component's (args, kwargs)
    import cloudpickle
    assert cloudpickle.loads((job.engine_dir / "inputs" / "2.in").read_bytes()) == ((3,), {})
    # the wrapper is executable; the cluster is recorded for the event fold
    assert os.access(job.engine_dir / "htmap_exec.sh", os.X_OK)
    assert '"cluster": 100' in (job.engine_dir / "clusters.json").read_text()


def test_options_files_custom_and_requirements(make_job, scheduler, tmp_path):
    (tmp_path / "data").mkdir()
    job = make_job(
        [1, 2],
        fixed={"request_memory": 2048, "request_cpus": 2, "requirements": 'OpSys == "LINUX"', "getenv": True},
        per_component={"request_disk": [100, 200], "requirements": ["Memory > 1", ""]},
        custom={"JobFlavour": '"espresso"', "Project": '"atlas"', "Weight": 3, "Nice": [True, False]},
        fixed_input_files=[str(tmp_path / "data") + "/", "root://eos.example//f.root", "file:///etc/hosts"],
        input_files=[["rel.txt"], []],
        output_remaps=[{"big.h5": "root://eos.example//out/0.h5"}, {}],
        settings=settings_with(tmp_path / "htmap", HTCONDOR__REQUIREMENTS="HasAVX"),
    )
    HTCondorEngine(job.settings, scheduler=scheduler).submit(job)
    desc, items = submitted(scheduler)
    assert desc["request_memory"] == "2048" and desc["request_cpus"] == "2" and desc["getenv"] == "true"
    assert desc["request_disk"] == "$(htmap_opt_request_disk)"
    assert [i["htmap_opt_request_disk"] for i in items] == ["100", "200"]
    assert desc["MY.JobFlavour"] == '"espresso"' and desc["MY.Project"] == '"atlas"' and desc["MY.Weight"] == "3"
    assert [i["htmap_my_Nice"] for i in items] == ["true", "false"]
    # requirements: settings AND per-component option, each component its own
    assert desc["requirements"] == "$(htmap_requirements)"
    assert [i["htmap_requirements"] for i in items] == ["(HasAVX) && (Memory > 1)", "HasAVX"]
    tif0 = expand_for(desc, items[0], "transfer_input_files").split(",")
    assert str(tmp_path / "data") + "/" in tif0  # trailing slash: the directory's contents
    assert "root://eos.example//f.root" in tif0 and "/etc/hosts" in tif0
    assert tif0[-1] == str(Path("rel.txt").absolute())
    assert "rel.txt" not in expand_for(desc, items[1], "transfer_input_files")
    assert expand_for(desc, items[0], "transfer_output_files").split(",")[-1] == "big.h5"
    remaps0 = expand_for(desc, items[0], "transfer_output_remaps")
    assert remaps0.endswith(';big.h5=root://eos.example//out/0.h5"')
    assert expand_for(desc, items[0], "arguments") == "\"0 'big.h5'\""
    assert expand_for(desc, items[1], "arguments") == '"1"'
    htcondor2.Submit(desc)


def test_fixed_requirements_anded_with_delivery_and_settings(make_job, scheduler, tmp_path):
    job = make_job([1], fixed={"requirements": "Memory > 100"},
                   settings=settings_with(tmp_path / "htmap", HTCONDOR__REQUIREMENTS="HasAVX"))
    HTCondorEngine(job.settings, scheduler=scheduler).submit(job)
    desc, _ = submitted(scheduler)
    assert desc["requirements"] == "(HasAVX) && (Memory > 100)"  # neither replaces the other


@pytest.mark.parametrize("key", ["../x", "a,b", "a=b", ""])
def test_bad_output_remap_keys_rejected(make_job, scheduler, key):
    job = make_job([1], output_remaps=[{key: "/tmp/x"}])
    with pytest.raises(exceptions.InvalidOption, match="output_remaps key"):
        HTCondorEngine(job.settings, scheduler=scheduler).check(job)


@pytest.mark.parametrize("method, python, extra", [
    ("assume", "python3", {}),
    ("shared", sys.executable, {}),
    ("docker", "python3", {"universe": "docker", "docker_image": "python:3.11-slim"}),
    ("singularity", "python3", {"universe": "container", "container_image": "/cvmfs/unpacked.cern.ch/img"}),
])
def test_delivery_methods(make_job, scheduler, tmp_path, method, python, extra):
    settings = settings_with(tmp_path / "htmap", DELIVERY_METHOD=method, DOCKER__IMAGE="python:3.11-slim",
                             SINGULARITY__IMAGE="/cvmfs/unpacked.cern.ch/img")
    job = make_job([1], settings=settings)
    HTCondorEngine(settings, scheduler=scheduler).submit(job)
    desc, _ = submitted(scheduler)
    for key, value in extra.items():
        assert desc[key] == value
    if not extra:
        assert desc["universe"] == "vanilla" and "docker_image" not in desc and "container_image" not in desc
    script = (job.engine_dir / "htmap_exec.sh").read_text()
    assert re.search(rf"^PYTHON={re.escape(python)}$", script, re.M)
    assert f"\nexport HTMAP_SUBMIT_PYTHON={platform.python_version()}\n" in script  # for the runner's hint
    assert f"# htmap job wrapper; delivery method: {method}" in script
    htcondor2.Submit(desc)


@functools.lru_cache(maxsize=None)
def node_bin() -> str:
    """A directory whose ``python3`` is the Python running the tests (the wrapper of the ``assume``
    method runs ``python3`` from PATH, and a pickle is read by the Python version that wrote it)."""
    d = tempfile.mkdtemp(prefix="htmap-node-bin-")
    python3 = os.path.join(d, "python3")
    with open(python3, "w") as f:  # a script, not a symlink: a venv's python must keep its venv
        f.write(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    os.chmod(python3, 0o755)
    return d


def node_env(extra=None):
    return {**os.environ, "PATH": node_bin() + os.pathsep + os.environ.get("PATH", ""), **(extra or {})}


def run_wrapper(job, component, tmp_path, *args, env=None):
    """Run the job's wrapper as an execute node would: a scratch dir with the transferred files."""
    scratch = tmp_path / f"scratch{component}"
    scratch.mkdir()
    for src in (jobfiles.runner_path(), jobfiles.runner_path().with_name("execution.py"), job.directory / "func",
                job.engine_dir / "inputs" / f"{component}.in",
                job.engine_dir / "htmap_exec.sh"):
        (scratch / src.name).write_bytes(src.read_bytes())
    proc = subprocess.run(["sh", "htmap_exec.sh", str(component), *args], cwd=scratch, capture_output=True,
                          text=True, env=node_env(env), timeout=60)
    return scratch, proc


def fails(x):
    raise ValueError(f"bad {x}")


def writes_outputs(x):
    from pathlib import Path

    import htmap
    for name in ("sub/kept.txt", "big.h5", "deep/er/table.csv", "stats/hist.png"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(name)
    htmap.transfer_output_files("sub/kept.txt", "big.h5", "deep/er/table.csv", "stats/hist.png")
    Path("state").write_text("checkpoint")
    htmap.checkpoint("state")
    return x + 1


def test_wrapper_runs_the_runner_and_lays_out_outputs(make_job, scheduler, tmp_path):
    remaps = {"big.h5": "root://x//y", "deep/er/table.csv": "/tmp/t.csv", "hist.png": "s3://b/h.png"}
    job = make_job([41], func=writes_outputs, output_remaps=[remaps])
    HTCondorEngine(job.settings, scheduler=scheduler).submit(job)
    desc, items = submitted(scheduler)
    assert expand_for(desc, items[0], "transfer_output_files").split(",")[3:] == ["big.h5", "deep__er__table.csv", "hist.png"]
    assert expand_for(desc, items[0], "transfer_output_remaps").endswith(
        ';big.h5=root://x//y;deep__er__table.csv=/tmp/t.csv;hist.png=s3://b/h.png"')
    scratch, proc = run_wrapper(job, 0, tmp_path, *remaps)
    assert proc.returncode == 0, proc.stderr
    assert jobfiles.read_output(scratch / "0.out") == ("OK", 42)
    # remapped files at the top, where their remaps find them (by path, or by name as on the local engine)
    assert (scratch / "big.h5").read_text() == "big.h5"
    assert (scratch / "deep__er__table.csv").read_text() == "deep/er/table.csv"
    assert (scratch / "hist.png").read_text() == "stats/hist.png"
    # the rest comes back as output_files/<i>/ with relative paths kept
    user = scratch / "_htmap_user_transfer" / "0"
    assert sorted(str(p.relative_to(user)) for p in user.rglob("*") if p.is_file()) == ["sub/kept.txt"]
    # checkpoints never come back as outputs once the component finished
    assert (scratch / "_htmap_checkpoint").is_dir() and not any((scratch / "_htmap_checkpoint").iterdir())


def test_wrapper_asks_for_a_retry_only_for_listed_exceptions(make_job, scheduler, tmp_path):
    job = make_job([1], func=fails, fixed={"max_retries": 2, "retry_exceptions": ["ValueError"]})
    HTCondorEngine(job.settings, scheduler=scheduler).submit(job)
    desc, _ = submitted(scheduler)
    assert desc["environment"] == '"HTMAP_RETRY_EXCEPTIONS=ValueError"'
    assert desc["on_exit_remove"] == "(ExitCode =!= 86) || (NumJobStarts > HTMapMaxRetries)"
    _, proc = run_wrapper(job, 0, tmp_path, env={"HTMAP_RETRY_EXCEPTIONS": "ValueError"})
    assert proc.returncode == hdelivery.RETRY_EXIT_CODE, proc.stderr
    (tmp_path / "scratch0").rename(tmp_path / "scratch0-first")
    _, proc = run_wrapper(job, 0, tmp_path, env={"HTMAP_RETRY_EXCEPTIONS": "KeyError"})
    assert proc.returncode == 0  # the error report stands
    # the policy, evaluated by ClassAds: requeue while attempts remain, then let it finish
    remove = classad2.ExprTree(desc["on_exit_remove"])
    ad = classad2.ClassAd({"ExitCode": 86, "NumJobStarts": 1, "HTMapMaxRetries": 2})
    assert remove.eval(ad) is False
    ad["NumJobStarts"] = 3
    assert remove.eval(ad) is True
    assert classad2.ExprTree(desc["on_exit_hold"]).eval(classad2.ClassAd({"ExitCode": 86, "ExitBySignal": False})) is False


def fixture_ad(name, job_index=0):
    text = (FIXTURES / f"{name}.ads.txt").read_text()
    blocks = [b for b in re.split(r"^# ---- .*----\s*$", text, flags=re.M) if b.strip()]
    return classad2.ClassAd(blocks[job_index])


def test_memory_and_runtime_policies_on_real_job_ads(make_job, scheduler):
    job = make_job([1], fixed={"request_memory": 50, "max_runtime": 60, "max_retries": 3, "retry_memory_factor": 2.0})
    HTCondorEngine(job.settings, scheduler=scheduler).submit(job)
    desc, _ = submitted(scheduler)
    htcondor2.Submit(desc)
    ad = fixture_ad("periodic_hold_memory")  # the job that used 210 MB with request_memory = 50
    ad["JobStatus"] = 2
    ad["HTMapMaxRuntime"] = 10 ** 9
    hold = classad2.ExprTree(desc["periodic_hold"])
    assert hold.eval(ad) is True
    reason = classad2.ExprTree(desc["periodic_hold_reason"]).eval(ad)
    used = ad.eval("MemoryUsage")  # (ResidentSetSize + 1023) / 1024 of the real ad
    assert used > 200 and f"used {used} MB" in reason and "request_memory of 50 MB" in reason
    assert classad2.ExprTree(desc["periodic_hold_subcode"]).eval(ad) == D.HOLD_MEMORY
    ad["RequestMemory"] = 4096  # within its request, but running too long
    ad["HTMapMaxRuntime"] = 60
    ad["JobCurrentStartDate"] = 1
    assert classad2.ExprTree(desc["periodic_hold_subcode"]).eval(ad) == D.HOLD_RUNTIME
    assert "max_runtime of 60 s" in classad2.ExprTree(desc["periodic_hold_reason"]).eval(ad)
    # release for retry while starts remain; escalate memory after a memory hold
    held = classad2.ClassAd({"HoldReasonCode": 3, "HoldReasonSubCode": D.HOLD_MEMORY, "NumJobStarts": 1,
                             "HTMapMaxRetries": 3})
    release = classad2.ExprTree(desc["periodic_release"])
    assert release.eval(held) is True
    held["NumJobStarts"] = 4
    assert release.eval(held) is False
    user_hold = classad2.ClassAd({"HoldReasonCode": 1, "HoldReasonSubCode": 0, "NumJobStarts": 1, "HTMapMaxRetries": 3})
    assert release.eval(user_hold) is False  # a user's hold is never undone by the retry policy
    grown = classad2.ClassAd({"MemoryUsage": 210, "LastHoldReasonCode": 3, "LastHoldReasonSubCode": D.HOLD_MEMORY,
                              "HTMapRequestMemory": 50})
    assert classad2.ExprTree(desc["request_memory"]).eval(grown) == 420
    released_by_user = fixture_ad("user_hold_release")  # LastHoldReasonCode = 1: no growth
    released_by_user["HTMapRequestMemory"] = 50
    assert classad2.ExprTree(desc["request_memory"]).eval(released_by_user) == 50


def test_late_materialization_above_threshold(make_job, scheduler, monkeypatch):
    monkeypatch.setattr(D, "LATE_MATERIALIZATION_THRESHOLD", 3)
    job = make_job([1, 2, 3, 4, 5])
    engine = HTCondorEngine(job.settings, scheduler=scheduler)
    engine.submit(job)
    desc, items = submitted(scheduler)
    assert desc["max_idle"] == str(D.DEFAULT_MAX_IDLE) and len(items) == 5
    events, _ = engine.read_events(job, None)
    assert [(e.component, e.kind.value, e.count) for e in events] == [(0, "unmaterialized", 5)]
    small = make_job([1, 2, 3])
    scheduler.calls.clear()
    engine.submit(small)
    assert "max_idle" not in submitted(scheduler)[0]
    events, _ = engine.read_events(small, None)
    assert [(e.component, e.kind.value, e.count) for e in events] == [(0, "submitted", 3)]
    given = make_job([1, 2, 3, 4], fixed={"max_materialize": 10})
    scheduler.calls.clear()
    engine.submit(given)
    desc, _ = submitted(scheduler)
    assert desc["max_materialize"] == "10" and "max_idle" not in desc


def test_cern_site_preset(make_job, scheduler, tmp_path):
    settings = settings_with(tmp_path / "htmap", SITE="cern")
    job = make_job([1], settings=settings, fixed={"max_runtime": 3600})
    engine = HTCondorEngine(settings, scheduler=scheduler)
    engine.submit(job)
    desc, _ = submitted(scheduler)
    assert desc["MY.JobFlavour"] == '"microcentury"'
    assert desc["MY.SendCredential"] == "true"
    assert [k for k, _ in scheduler.calls] == ["kerberos", "submit"]  # credential first
    htcondor2.Submit(desc)
    scheduler.calls.clear()
    longer = make_job([1, 2], settings=settings, per_component={"max_runtime": [3601, 4 * 86400]})
    engine.submit(longer)
    desc, items = submitted(scheduler)
    assert [i["htmap_flavour"] for i in items] == ['"longlunch"', '"nextweek"']
    scheduler.calls.clear()
    mine = make_job([1], settings=settings, fixed={"max_runtime": 60}, custom={"JobFlavour": '"tomorrow"'})
    engine.submit(mine)
    assert submitted(scheduler)[0]["MY.JobFlavour"] == '"tomorrow"'  # the user's choice wins
    with pytest.raises(exceptions.InvalidOption, match="nextweek"):
        engine.check(make_job([1], settings=settings, fixed={"max_runtime": 8 * 86400}))


def test_missing_kerberos_ticket_is_a_clear_error_and_nothing_is_submitted(make_job, tmp_path):
    from htmap.engines.htcondor import bindings

    sched = RecordingScheduler(kerberos_error=bindings.kerberos_error(RuntimeError("no credential cache")))
    settings = settings_with(tmp_path / "htmap", HTCONDOR__CREDENTIALS="kerberos")
    job = make_job([1], settings=settings)
    with pytest.raises(exceptions.HTMapException, match="kinit"):
        HTCondorEngine(settings, scheduler=sched).submit(job)
    assert [k for k, _ in sched.calls] == ["kerberos"]


def test_htmap_dir_on_eos_is_refused(make_job, scheduler, tmp_path):
    settings = settings_with(tmp_path / "htmap", SITE="cern")
    settings["HTMAP_DIR"] = "/eos/user/j/jdoe/htmap"
    job = make_job([1], settings=settings)
    with pytest.raises(exceptions.InvalidOption, match="AFS"):
        HTCondorEngine(settings, scheduler=scheduler).check(job)


def test_registered_delivery_method_htmap06_signature(make_job, scheduler, tmp_path):
    seen = []

    def options(tag, map_dir):
        seen.append(("options", tag, Path(map_dir)))
        return {"executable": "/opt/site/run.sh", "transfer_input_files": ["/opt/site/env.tar"], "MY.Site": '"x"'}

    def setup(tag, map_dir):
        seen.append(("setup", tag, Path(map_dir)))

    htmap.register_delivery_method("site-env", options, setup)
    htmap.register_delivery_method("just-a-name")  # the one-argument call still works
    try:
        assert delivery_registry.check_delivery_method("just-a-name") == "just-a-name"
        settings = settings_with(tmp_path / "htmap", DELIVERY_METHOD="site-env")
        job = make_job([1], settings=settings)
        HTCondorEngine(settings, scheduler=scheduler).submit(job)
        desc, _ = submitted(scheduler)
        assert desc["executable"] == "/opt/site/run.sh" and desc["MY.Site"] == '"x"'
        assert desc["transfer_input_files"].endswith(",/opt/site/env.tar")
        assert ("setup", "mymap", job.directory) in seen and ("options", "mymap", job.directory) in seen
    finally:
        delivery_registry.REGISTERED.pop("site-env", None)
        delivery_registry.REGISTERED.pop("just-a-name", None)
    with pytest.raises(exceptions.UnknownPythonDeliveryMethod):
        delivery_registry.check_delivery_method("site-env")


def make_prefix(root: Path) -> Path:
    prefix = root / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    (prefix / "lib" / "marker.txt").write_text("v1")
    py = prefix / "bin" / "python3"
    py.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    py.chmod(0o755)
    return prefix


def test_transplant_packs_once_per_content_and_runs(make_job, scheduler, tmp_path):
    prefix = make_prefix(tmp_path)
    cache = tmp_path / "transplants"
    first, packed = hdelivery.pack_transplant(prefix, cache)
    assert packed and first.exists()
    again, packed = hdelivery.pack_transplant(prefix, cache)
    assert again == first and not packed
    (prefix / "lib" / "marker.txt").write_text("version 2")
    changed, packed = hdelivery.pack_transplant(prefix, cache)
    assert packed and changed != first
    settings = settings_with(tmp_path / "htmap", DELIVERY_METHOD="transplant", TRANSPLANT__DIR=str(cache))
    job = make_job([20], settings=settings)
    HTCondorEngine(settings, scheduler=scheduler, transplant_prefix=prefix).submit(job)
    desc, _ = submitted(scheduler)
    assert desc["transfer_input_files"].split(",")[4] == str(changed)  # cached tarball, no repack
    assert 'TARGET.OpSys == "LINUX"' in desc["requirements"]
    htcondor2.Submit(desc)
    scratch = tmp_path / "scratch0"
    scratch.mkdir()
    (scratch / changed.name).write_bytes(changed.read_bytes())
    for src in (jobfiles.runner_path(), job.directory / "func", job.engine_dir / "inputs" / "0.in",
                job.engine_dir / "htmap_exec.sh"):
        (scratch / src.name).write_bytes(src.read_bytes())
    proc = subprocess.run(["sh", "htmap_exec.sh", "0"], cwd=scratch, capture_output=True, text=True, timeout=60,
                          env=node_env())
    assert proc.returncode == 0, proc.stderr
    assert (scratch / "_htmap_python" / "lib" / "marker.txt").read_text() == "version 2"
    assert jobfiles.read_output(scratch / "0.out") == ("OK", 40)


def test_transplant_alternate_input_path(make_job, scheduler, tmp_path):
    prefix = make_prefix(tmp_path)
    settings = settings_with(tmp_path / "htmap", DELIVERY_METHOD="transplant", TRANSPLANT__ASSUME_EXISTS=True,
                             TRANSPLANT__ALTERNATE_INPUT_PATH="osdf:///ospool/ap20/data/jdoe/")
    job = make_job([1], settings=settings)
    HTCondorEngine(settings, scheduler=scheduler, transplant_prefix=prefix).submit(job)
    desc, _ = submitted(scheduler)
    name = hdelivery.transplant_name(hdelivery.prefix_fingerprint(prefix))
    assert desc["transfer_input_files"].split(",")[4] == f"osdf:///ospool/ap20/data/jdoe/{name}"
    assert not (tmp_path / "htmap" / "transplants").exists()  # ASSUME_EXISTS: nothing packed


@pytest.mark.parametrize("name", ["func", "runner.py", "3.in", "_htmap_checkpoint"])
def test_input_files_cannot_replace_htmaps_own(make_job, scheduler, tmp_path, name):
    job = make_job([1], fixed_input_files=[str(tmp_path / name)])
    with pytest.raises(exceptions.InvalidOption, match="a name htmap uses itself"):
        HTCondorEngine(job.settings, scheduler=scheduler).check(job)


def dies_after_checkpoint(x):
    import os
    from pathlib import Path

    import htmap
    if Path("state").exists():  # restarted: continue from the checkpoint
        return Path("state").read_text()
    Path("state").write_text("step 7")
    htmap.checkpoint("state")
    os._exit(3)  # the process dies (like an eviction would stop it) after checkpointing


def test_checkpoint_kept_when_the_run_does_not_finish(make_job, scheduler, tmp_path):
    job = make_job([1], func=dies_after_checkpoint)
    HTCondorEngine(job.settings, scheduler=scheduler).submit(job)
    desc, _ = submitted(scheduler)
    assert "_htmap_checkpoint" in desc["transfer_output_files"].split(",")
    assert desc["when_to_transfer_output"] == "ON_EXIT_OR_EVICT"  # sent back (and restored) on eviction too
    scratch, proc = run_wrapper(job, 0, tmp_path)
    assert proc.returncode == 3 and "exited with status 3" in proc.stderr
    assert (scratch / "_htmap_checkpoint" / "state").read_text() == "step 7"
    assert (scratch / "_htmap_user_transfer" / "0").is_dir()  # every listed output exists at exit
    # what HTCondor brings back at the restart: _htmap_checkpoint/ in a fresh scratch directory
    fresh = tmp_path / "restart"
    fresh.mkdir()
    shutil.copytree(scratch / "_htmap_checkpoint", fresh / "_htmap_checkpoint")
    for name in ("runner.py", "execution.py", "func", "0.in", "htmap_exec.sh"):
        shutil.copyfile(scratch / name, fresh / name)
    proc = subprocess.run(["sh", "htmap_exec.sh", "0"], cwd=fresh, capture_output=True, text=True, timeout=60,
                          env=node_env())
    assert proc.returncode == 0, proc.stderr
    assert jobfiles.read_output(fresh / "0.out") == ("OK", "step 7")
    assert not any((fresh / "_htmap_checkpoint").iterdir())  # not returned as an output


def test_rerun_is_a_new_cluster_into_the_same_log(make_job, scheduler):
    job = make_job([1, 2, 3])
    engine = HTCondorEngine(job.settings, scheduler=scheduler)
    engine.submit(job)
    _, cursor = engine.read_events(job, None)
    engine.submit(job, [2, 0])
    first, second = [v for k, v in scheduler.calls if k == "submit"]
    assert [i["component"] for i in second[1]] == ["0", "2"]
    assert second[0]["log"] == first[0]["log"]
    events, _ = engine.read_events(job, cursor)
    assert [(e.component, e.kind.value, e.count) for e in events] == [(0, "submitted", 1), (2, "submitted", 1)]


def killed(x):
    import os
    import signal
    os.kill(os.getpid(), signal.SIGKILL)  # like the kernel's OOM killer


def test_wrapper_passes_a_kill_on_as_a_signal(make_job, scheduler, tmp_path):
    job = make_job([1], func=killed)
    HTCondorEngine(job.settings, scheduler=scheduler).submit(job)
    scratch, proc = run_wrapper(job, 0, tmp_path)
    assert proc.returncode == -9  # ExitBySignal for HTCondor, hence on_exit_hold subcode 4 (retryable)
    assert (scratch / "_htmap_user_transfer" / "0").is_dir()
    desc, _ = submitted(scheduler)
    ad = classad2.ClassAd({"ExitBySignal": True, "ExitSignal": 9})
    assert classad2.ExprTree(desc["on_exit_hold"]).eval(ad) is True
    assert classad2.ExprTree(desc["on_exit_hold_subcode"]).eval(ad) == D.HOLD_RUNNER_SIGNAL
    assert classad2.ExprTree(desc["on_exit_hold_reason"]).eval(ad) == "the htmap runner was killed by signal 9"


def test_large_maps_ship_inputs_in_chunks(make_job, scheduler, tmp_path, monkeypatch):
    from htmap.engines.htcondor import engine as E

    monkeypatch.setattr(E, "INPUT_CHUNK_THRESHOLD", 5)
    monkeypatch.setattr(E, "MIN_CHUNK", 2)
    monkeypatch.setattr(E, "MAX_CHUNK", 4)
    job = make_job(list(range(10)), output_remaps=[{"r.txt": "/tmp/r"}] + [{}] * 9)
    engine = HTCondorEngine(job.settings, scheduler=scheduler)
    engine.submit(job)
    desc, items = submitted(scheduler)
    files = sorted(p.name for p in (job.engine_dir / "inputs").iterdir())
    assert files == [f"_htmap_chunk_{f}.{ext}" for f in (0, 4, 8) for ext in ("data", "index")]
    assert items[5]["htmap_chunk"] == "_htmap_chunk_4"
    assert expand_for(desc, items[5], "arguments") == '"-c _htmap_chunk_4 4 5"'
    assert expand_for(desc, items[0], "arguments") == "\"-c _htmap_chunk_0 0 0 'r.txt'\""
    tif = expand_for(desc, items[9], "transfer_input_files").split(",")
    assert tif[3:5] == [f"{job.engine_dir}/inputs/_htmap_chunk_8.data", f"{job.engine_dir}/inputs/_htmap_chunk_8.index"]
    htcondor2.Submit(desc)
    # on the "node": the wrapper takes component 5's input out of its chunk
    scratch = tmp_path / "scratch5"
    scratch.mkdir()
    for src in (jobfiles.runner_path(), job.directory / "func", job.engine_dir / "htmap_exec.sh",
                job.engine_dir / "inputs" / "_htmap_chunk_4.data", job.engine_dir / "inputs" / "_htmap_chunk_4.index"):
        (scratch / src.name).write_bytes(src.read_bytes())
    proc = subprocess.run(["sh", "htmap_exec.sh", "-c", "_htmap_chunk_4", "4", "5"], cwd=scratch,
                          capture_output=True, text=True, timeout=60, env=node_env())
    assert proc.returncode == 0, proc.stderr
    assert jobfiles.read_output(scratch / "5.out") == ("OK", 10)
    assert not (scratch / "_htmap_chunk_4.data").exists()  # never transferred back
    # a rerun of a few components is small again: own files
    scheduler.calls.clear()
    engine.submit(job, [5])
    desc, items = submitted(scheduler)
    assert desc["arguments"] == "$(component)" and (job.engine_dir / "inputs" / "5.in").exists()


def test_custom_options_are_classad_expressions_as_in_htmap_0_6(make_job, scheduler):
    job = make_job([1], custom={"SendCredential": "true", "Answer": "42", "JobFlavour": '"espresso"',
                                "Ratio": 0.5, "Flag": False, "Expr": "RequestMemory * 2"})
    HTCondorEngine(job.settings, scheduler=scheduler).submit(job)
    desc, _items = submitted(scheduler)
    assert desc["MY.SendCredential"] == "true" and desc["MY.Answer"] == "42"
    assert desc["MY.JobFlavour"] == '"espresso"' and desc["MY.Ratio"] == "0.5" and desc["MY.Flag"] == "false"
    assert desc["MY.Expr"] == "RequestMemory * 2"


@pytest.mark.parametrize("value", ["espresso workday", '"unclosed', "1 +"])
def test_a_custom_option_that_is_no_classad_expression_is_refused_naming_key_and_quoting(make_job, scheduler, value):
    job = make_job([1], custom={"JobFlavour": value})
    with pytest.raises(exceptions.InvalidOption) as e:
        HTCondorEngine(job.settings, scheduler=scheduler).check(job)
    assert "'JobFlavour'" in str(e.value) and "custom_options=" in str(e.value)
    assert scheduler.calls == []


def test_a_bare_word_custom_option_warns_that_it_is_no_string(make_job, scheduler):
    job = make_job([1], custom={"JobFlavour": "espresso"})
    with pytest.warns(UserWarning, match=r"""JobFlavour.*'"espresso"'"""):
        HTCondorEngine(job.settings, scheduler=scheduler).check(job)
