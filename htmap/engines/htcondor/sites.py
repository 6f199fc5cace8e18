"""Site presets, as data: what a pool's documentation asks every job to carry.

``htmap.settings["SITE"] = "cern"`` (or ``SITE = "cern"`` in ~/.htmaprc) selects one.
A preset may give:

* ``engine``: what ``ENGINE = "auto"`` (the default) means at this site (``cern``: htcondor);
* ``delivery``: the delivery method used while DELIVERY_METHOD is left at its default;
* ``credentials``: used while HTCONDOR.CREDENTIALS is empty (``"kerberos"``: forward the
  user's Kerberos credential through the credd and set ``MY.SendCredential = true``);
* ``flavours``: ``(seconds, name)`` runtime classes, shortest first; the job attribute
  ``flavour_attribute`` is set to the shortest class that fits ``max_runtime`` unless the
  user gives that attribute;
* ``descriptors``: extra submit descriptors (the user's options win);
* ``forbidden_dir_prefixes``: ``(prefix, message)`` for HTMAP_DIR locations the pool
  cannot use to submit from.

To add a site, add an entry to ``SITES``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ... import exceptions

# CERN batch docs (batchdocs.web.cern.ch): the standard schedds share files with the submit side
# through AFS ("we do not allow EOS FUSE to serve as this filesystem", local/file_xfer_plugin);
# the experimental EosSubmit schedds (local/eossubmit, `module load lxbatch/eossubmit`) take only
# jobs whose every file (executable, log, stdout/stderr, inputs, output destinations) is on /eos,
# reject jobs mixing EOS and other paths, and since November 2025 refuse AFS paths altogether.
EOS_REFUSAL = (
    "HTMAP_DIR is {dir}, on EOS. CERN's standard schedds (the default on lxplus) share the job's files "
    "with lxplus through AFS and do not accept EOS (FUSE) paths for them. CERN's EosSubmit schedds "
    "(`module load lxbatch/eossubmit`, experimental) are the ones for jobs whose files all live on /eos, "
    "but htmap does not submit to them: every htmap job also ships htmap's runner from your Python "
    "installation, and those schedds reject jobs that mix EOS and non-EOS files. Put HTMAP_DIR on AFS, "
    "e.g. htmap.settings['HTMAP_DIR'] = '/afs/cern.ch/user/<u>/<user>/htmap' (or `htmap set HTMAP_DIR ...`), "
    "and send large outputs to EOS with output_remaps to root://eosuser.cern.ch//eos/... URLs "
    "(see docs/cern.md)."
)

SITES: Dict[str, Dict[str, Any]] = {
    # https://batchdocs.web.cern.ch: JobFlavour classes, Kerberos forwarding, no EOS submission.
    "cern": {
        "engine": "htcondor",  # what ENGINE "auto" (the default) means with this SITE
        "delivery": "assume",
        "credentials": "kerberos",
        "flavour_attribute": "JobFlavour",
        "flavours": (
            (20 * 60, "espresso"),
            (60 * 60, "microcentury"),
            (2 * 60 * 60, "longlunch"),
            (8 * 60 * 60, "workday"),
            (24 * 60 * 60, "tomorrow"),
            (3 * 24 * 60 * 60, "testmatch"),
            (7 * 24 * 60 * 60, "nextweek"),
        ),
        "descriptors": {},
        "forbidden_dir_prefixes": (
            ("/eos/", EOS_REFUSAL),
        ),
    },
}


def site_preset(name: Optional[str]) -> Dict[str, Any]:
    """The preset called ``name`` ({} for none)."""
    if not name:
        return {}
    try:
        return SITES[str(name).lower()]
    except KeyError:
        raise exceptions.InvalidOption(
            f"unknown SITE {name!r}; known sites: {', '.join(sorted(SITES))} (or leave SITE empty)"
        ) from None


def flavour_for(preset: Dict[str, Any], max_runtime: int) -> str:
    """The shortest runtime class of ``preset`` that allows ``max_runtime`` seconds."""
    for limit, name in preset["flavours"]:
        if max_runtime <= limit:
            return name
    longest, name = preset["flavours"][-1]
    raise exceptions.InvalidOption(
        f"max_runtime={max_runtime} s is longer than the longest {preset['flavour_attribute']} "
        f"({name}, {longest} s) this site allows; split the work into shorter components"
    )
