"""Issue 13 "done when": the README's settings table lists every setting, and docs/cern.md (13.1)
exists, is linked from the README and covers each point of the lxplus guide."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from htmap.settings import BASE_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
SLURM_ENGINE_SETTINGS = ("SLURM.MAX_ARRAY_SIZE", "SLURM.SCRATCH_DIR", "SLURM.POLL_INTERVAL")  # read by the engine


def leaves(d: Dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in d.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def settings_table() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("| key | default | meaning |")
    return text[start:text.index("\n\n", start)]


def test_readme_settings_table_lists_every_setting():
    table = settings_table()
    listed = set(re.findall(r"`([A-Z_]+(?:\.[A-Za-z_]+)?)(?:\.\*)?`", table))
    for names in re.findall(r"`(SLURM\.[A-Z_]+)`", table):
        listed.add(names)
    wanted = {k if not k.startswith("MAP_OPTIONS") else "MAP_OPTIONS" for k in leaves(BASE_SETTINGS)}
    wanted |= set(SLURM_ENGINE_SETTINGS) | {"SITE"}
    assert wanted - listed == set()


@pytest.fixture(scope="module")
def guide() -> str:
    return (ROOT / "docs" / "cern.md").read_text()


def test_readme_links_the_cern_guide():
    assert "(docs/cern.md)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("topic, needles", [
    ("install in a venv or with --user", ["python3 -m venv", "--user", "htmap-ng"]),
    ("kinit and ticket lifetime", ["kinit", "klist", "lifetime"]),
    ("SITE cern then htmap info", ["htmap set SITE cern", "htmap info"]),
    ("python on the node with assume, cloudpickle, shared with an LCG view",
     ["assume", "cloudpickle", "shared", "LCG", "/cvmfs/sft.cern.ch"]),
    ("JobFlavour from max_runtime, Kerberos forwarding", ["JobFlavour", "max_runtime", "HTCONDOR.CREDENTIALS",
                                                          "espresso"]),
    ("output to EOS with output_remaps and root:// URLs", ["output_remaps", "root://eosuser.cern.ch//eos/"]),
    ("the AFS limits", ["AFS", "16,000", "outputs/0/012/12345.out"]),
    ("wrapping an external program", ["fixed_input_files", "subprocess.run", "returncode"]),
    ("migrating from the batch-docs recipe", ["import htcondor", "htcondor2", "Credd", "add_user_cred"]),
    ("custom options are ClassAd expressions", ["custom_options", "ClassAd"]),
    ("EOS submit schedds", ["EosSubmit", "lxbatch/eossubmit"]),
    ("SITE implies the engine", ["ENGINE"]),
])
def test_cern_guide_covers(guide, topic, needles):
    missing = [n for n in needles if n not in guide]
    assert not missing, f"docs/cern.md does not cover {topic}: {missing}"
