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


def test_without_a_site_auto_probes():
    htmap.settings["SITE"] = ""
    assert engines.site_engine() is None
    assert "SITE" not in engines.resolve_name("auto")[1]


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
