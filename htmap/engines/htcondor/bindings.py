"""The one place that imports ``htcondor2``, and the thin seam in front of the schedd.

``Scheduler`` is what the engine needs from HTCondor (submit, act, edit, add a
credential); ``HTCondorScheduler`` implements it with the real bindings. Tests pass a
recording fake with the same methods.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Tuple

from ... import exceptions

INSTALL_HINT = "pip install 'htmap[htcondor]'"
PROBE_TIMEOUT = 5.0  # seconds available() waits for a schedd before saying no


def import_htcondor2():
    """The ``htcondor2`` module, or a clear error saying what to install."""
    try:
        import htcondor2
    except ImportError as e:
        raise exceptions.EngineUnavailable(
            f"the htcondor engine needs the HTCondor Python bindings (htcondor >= 24, module htcondor2), "
            f"which are not importable here ({e}); install them with: {INSTALL_HINT}"
        ) from e
    return htcondor2


class Scheduler(Protocol):
    """What the engine asks of HTCondor. Job specs are ClassAd constraint strings."""

    def submit(self, description: Dict[str, str], itemdata: List[Dict[str, str]]) -> int:
        """Submit one cluster; returns its ClusterId."""

    def act(self, action: str, constraint: str, reason: Optional[Tuple[str, int]] = None) -> None:
        """``action`` is an ``htcondor2.JobAction`` member name (Hold, Release, Suspend...)."""

    def edit(self, constraint: str, attr: str, value: str) -> None:
        ...

    def add_kerberos_credential(self) -> None:
        ...


def _location(htcondor2, kind: str, name: str, collector: str):
    """The ClassAd locating a (possibly remote) daemon, or None for the local one."""
    if not name and not collector:
        return None
    coll = htcondor2.Collector(collector) if collector else htcondor2.Collector()
    daemon = getattr(htcondor2.DaemonType, kind)
    location = coll.locate(daemon, name) if name else coll.locate(daemon)
    if location is None:  # the 25.x bindings answer None, not an error, for an unknown name
        where = f"the collector {collector!r}" if collector else "the pool's collector"
        raise exceptions.EngineUnavailable(f"{where} knows no {kind} named {name!r}; check the name "
                                           f"(condor_status -{kind.lower()} lists them)")
    return location


class HTCondorScheduler:
    """``Scheduler`` over the real bindings; ``scheduler``/``collector`` pick remote daemons."""

    def __init__(self, scheduler: str = "", collector: str = ""):
        self.htcondor2 = import_htcondor2()
        self.scheduler_name = scheduler
        self.collector = collector
        self._schedd = None

    @property
    def schedd(self):
        if self._schedd is None:
            location = _location(self.htcondor2, "Schedd", self.scheduler_name, self.collector)
            self._schedd = self.htcondor2.Schedd(location) if location is not None else self.htcondor2.Schedd()
        return self._schedd

    def submit(self, description: Dict[str, str], itemdata: List[Dict[str, str]]) -> int:
        sub = self.htcondor2.Submit(description)
        result = self.schedd.submit(sub, itemdata=iter(itemdata))
        return int(result.cluster())

    def act(self, action: str, constraint: str, reason: Optional[Tuple[str, int]] = None) -> None:
        # The 25.x bindings drop a plain-string reason; only (text, code) reaches the job.
        self.schedd.act(getattr(self.htcondor2.JobAction, action), constraint, reason=reason)

    def edit(self, constraint: str, attr: str, value: str) -> None:
        self.schedd.edit(constraint, attr, value)

    def add_kerberos_credential(self) -> None:
        h = self.htcondor2
        try:
            location = _location(h, "Credd", "", self.collector) if self.collector else None
            credd = h.Credd(location) if location is not None else h.Credd()
            credd.add_user_cred(h.CredType.Kerberos, None)
        except Exception as e:
            raise kerberos_error(e) from e

    def ping(self) -> None:
        """Raise unless the schedd answers a (cheap) query."""
        self.schedd.query("false", ["ClusterId"], limit=1)


def kerberos_error(e: BaseException) -> exceptions.HTMapException:
    return exceptions.EngineUnavailable(
        f"could not hand your Kerberos credential to the HTCondor credd ({type(e).__name__}: {e}). "
        "Make sure you have a valid ticket (run `kinit`, check with `klist`) and that this submit host "
        "runs a credd; or set htmap.settings['HTCONDOR.CREDENTIALS'] = '' to submit without one."
    )


_PING = (
    "import sys; sys.path.insert(0, sys.argv[1]);"
    "from htmap.engines.htcondor.bindings import HTCondorScheduler;"
    "HTCondorScheduler(sys.argv[2], sys.argv[3]).ping()"
)


def probe(scheduler: str = "", collector: str = "", timeout: float = PROBE_TIMEOUT) -> Tuple[bool, str]:
    """Whether a schedd answers within ``timeout`` seconds (never hangs).

    The query runs in a child process: the bindings hold the GIL while they wait, so a
    thread could not be abandoned on time."""
    try:
        import_htcondor2()
    except exceptions.EngineUnavailable as e:
        return False, str(e)
    package_parent = str(Path(__file__).resolve().parents[3])
    try:
        proc = subprocess.run([sys.executable, "-c", _PING, package_parent, scheduler, collector],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"no HTCondor schedd answered within {timeout:g} s"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return False, f"no HTCondor schedd answered ({lines[-1] if lines else f'exit status {proc.returncode}'})"
    return True, f"schedd {scheduler!r} answered" if scheduler else "the local schedd answered"
