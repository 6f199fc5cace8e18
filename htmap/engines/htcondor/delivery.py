"""What each delivery method writes: the job wrapper script and its submit descriptors.

Every component runs ``htmap_exec.sh COMPONENT [REMAPPED_NAME ...]`` (written once per
map into the map's ``engine/`` directory and shipped as the executable). The wrapper

1. makes ``_htmap_transfer/`` and ``_htmap_checkpoint/`` (the runner fills them);
2. prepares Python (transplant: unpacks the shipped environment);
3. with ``-c CHUNK FIRST`` (large maps, see ``engine.write_inputs``) takes the component's
   input out of the shipped chunk into ``COMPONENT.in``; then runs
   ``PYTHON runner.py func COMPONENT.in COMPONENT .`` (output ``COMPONENT.out``);
4. optionally asks HTCondor to run the component again (exit 86) when it raised one of
   ``HTMAP_RETRY_EXCEPTIONS`` (see ``description.RETRY_EXIT_CODE``);
5. moves files named in ``output_remaps`` to the top of the scratch directory and
   ``_htmap_transfer/`` to ``_htmap_user_transfer/COMPONENT/`` (which comes back as the
   map's ``output_files/COMPONENT/``); on success empties ``_htmap_checkpoint/`` so that
   checkpoints are never returned as outputs; every listed output path exists at exit;
6. exits with the runner's status, or dies of the signal that killed the runner (so that
   HTCondor's ``ExitBySignal`` and the retry policy see a kill as a kill).

Python per method: ``assume`` ``python3`` on the node's PATH; ``shared`` the submit
side's own interpreter (``sys.executable``, an AFS/CVMFS/EOS path visible to the
nodes); ``docker`` ``python3`` in ``DOCKER.IMAGE`` (docker universe); ``singularity``
``python3`` in ``SINGULARITY.IMAGE`` (container universe, ``container_image``);
``transplant`` the packed local prefix.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shlex
import sys
import tarfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ... import exceptions, store
from . import deferred

WRAPPER_NAME = "htmap_exec.sh"
TRANSPLANT_UNPACK_DIR = "_htmap_python"
RETRY_EXIT_CODE = 86

_RETRY_CHECK = (
    "import pickle,sys\n"
    "d=open(sys.argv[1],'rb').read();h=b'HTMAP1 ERR\\n'\n"
    "sys.exit(0 if d.startswith(h) and pickle.loads(d[len(h):]).get('exception_type') in sys.argv[2].split(',') else 1)"
)


_EXTRACT = (
    "import struct,sys\n"
    "n,first,c=sys.argv[1],int(sys.argv[2]),int(sys.argv[3])\n"
    "i=open(n+'.index','rb');i.seek((c-first)*8);s,e=struct.unpack('<2Q',i.read(16))\n"
    "d=open(n+'.data','rb');d.seek(s);open('%d.in'%c,'wb').write(d.read(e-s))"
)


def wrapper_script(python: str, setup_lines: List[str], method: str) -> str:
    """The job's executable for ``method``, running ``python``."""
    setup = "\n".join(setup_lines)
    deferred_check = "\n".join(deferred.wrapper_lines())
    return f"""#!/bin/sh
# htmap job wrapper; delivery method: {method}
# usage: {WRAPPER_NAME} [-c CHUNK FIRST] COMPONENT [REMAPPED_OUTPUT_NAME ...]
CHUNK=""
if [ "$1" = "-c" ]; then
    CHUNK="$2"
    FIRST="$3"
    shift 3
fi
C="$1"
shift
mkdir -p _htmap_transfer _htmap_checkpoint "_htmap_user_transfer/$C"
# every listed output exists from the start: a vacate transfers them to the spool (the checkpoint
# with them) and back into the restarted job; an empty COMPONENT.out means "no output yet"
[ -e "$C.out" ] || : > "$C.out"
{deferred_check}
{setup}
PYTHON={shlex.quote(python)}
export HTMAP_SUBMIT_PYTHON={platform.python_version()}
if [ -n "$CHUNK" ]; then
    "$PYTHON" -c {shlex.quote(_EXTRACT)} "$CHUNK" "$FIRST" "$C" || echo "htmap: could not take the input of component $C from $CHUNK" >&2
    rm -f "$CHUNK.data" "$CHUNK.index"
fi
"$PYTHON" runner.py func "$C.in" "$C" .
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "htmap: the runner ($PYTHON) exited with status $rc" >&2
fi
if [ "$rc" -eq 0 ] && [ -n "$HTMAP_RETRY_EXCEPTIONS" ] && [ -f "$C.out" ]; then
    if "$PYTHON" -c {shlex.quote(_RETRY_CHECK)} "$C.out" "$HTMAP_RETRY_EXCEPTIONS"; then
        echo "htmap: component $C raised one of $HTMAP_RETRY_EXCEPTIONS; asking HTCondor to run it again" >&2
        rc={RETRY_EXIT_CODE}
    fi
fi
mkdir -p _htmap_transfer _htmap_user_transfer
for name in "$@"; do
    # a remapped output: by its path under _htmap_transfer/, else the first file of that name;
    # it goes to the top of the scratch directory ("/" -> "__"), where its remap finds it
    src="_htmap_transfer/$name"
    if [ ! -e "$src" ]; then
        src=$(find _htmap_transfer -name "$name" -type f 2>/dev/null | head -n 1)
    fi
    if [ -n "$src" ] && [ -e "$src" ]; then
        mv "$src" "./$(printf '%s' "$name" | sed 's|/|__|g')"
    fi
done
rm -rf "_htmap_user_transfer/$C"
mv _htmap_transfer "_htmap_user_transfer/$C"
mkdir -p _htmap_transfer
if [ "$rc" -eq 0 ]; then
    rm -rf _htmap_checkpoint
fi
mkdir -p _htmap_checkpoint
if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then
    # the runner died of a signal: die of it too, so that HTCondor sees ExitBySignal
    kill -$((rc - 128)) $$
fi
exit $rc
"""


def transplant_setup(tarball_name: str) -> List[str]:
    d = TRANSPLANT_UNPACK_DIR
    return [
        f'if [ ! -x {d}/bin/python3 ]; then',
        f'    mkdir -p {d} && tar -xzf {shlex.quote(tarball_name)} -C {d} || {{ echo "htmap: could not unpack the transplanted Python {tarball_name}" >&2; exit 1; }}',
        'fi',
        'export PYTHONNOUSERSITE=1',
    ]


# -- transplant ------------------------------------------------------------------------
def prefix_fingerprint(prefix: Path) -> str:
    """A hash of the environment under ``prefix``: every file's path, size, mtime and link target.

    Reading every byte of a multi-GB environment at each submit would be too slow; any
    install, upgrade or edit changes sizes or mtimes, so this is what "same content" means.
    """
    h = hashlib.sha256()
    h.update(os.fsencode(str(prefix)) + b"\0")
    for root, dirs, files in os.walk(prefix):
        dirs.sort()
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, prefix)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            target = os.readlink(path) if os.path.islink(path) else ""
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{target}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:20]


TRANSPLANT_PREFIX, TRANSPLANT_SUFFIX, PACKAGES_SUFFIX = "htmap-transplant-", ".tar.gz", ".packages"


def transplant_name(fingerprint: str) -> str:
    return f"{TRANSPLANT_PREFIX}{fingerprint}{TRANSPLANT_SUFFIX}"


def transplant_cache_dir(settings: Dict[str, Any], htmap_dir: Path) -> Path:
    """Where packed installations are kept: ``TRANSPLANT.DIR``, else ``HTMAP_DIR/transplants``."""
    return Path(os.path.expanduser(str(_setting(settings, "TRANSPLANT.DIR", "") or Path(htmap_dir) / "transplants")))


def packages_path(tarball: Path) -> Path:
    """The list of packages in a packed installation, kept beside it (``htmap transplants info``)."""
    return tarball.with_name(tarball.name[: -len(TRANSPLANT_SUFFIX)] + PACKAGES_SUFFIX)


def installed_packages(prefix: Path) -> List[str]:
    """``name==version`` of every distribution installed under a Python prefix."""
    from importlib import metadata

    paths = [str(p) for pattern in ("lib/python*/site-packages", "lib64/python*/site-packages", "Lib/site-packages")
             for p in sorted(Path(prefix).glob(pattern))]
    found = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions(path=paths) if d.metadata["Name"]}
    return sorted(found, key=str.lower)


def pack_transplant(prefix: Path, cache_dir: Path) -> Tuple[Path, bool]:
    """The tarball of ``prefix`` in ``cache_dir``, packed only if not there yet; (path, packed_now)."""
    prefix = Path(prefix)
    if not (prefix / "bin").is_dir():
        raise exceptions.HTMapException(f"cannot transplant {prefix}: it has no bin/ directory (is it a Python prefix?)")
    target = Path(cache_dir) / transplant_name(prefix_fingerprint(prefix))
    if target.exists():
        return target, False
    store.make_dir(target.parent)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=6, dereference=True) as tar:
            for entry in sorted(os.listdir(prefix)):
                tar.add(prefix / entry, arcname=entry,
                        filter=lambda info: None if "__pycache__" in info.name.split("/") else info)
        os.chmod(tmp, 0o600)
        store.write_text_atomic(packages_path(target), "".join(f"{p}\n" for p in installed_packages(prefix)))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target, True


# -- per method ------------------------------------------------------------------------
def _setting(settings: Dict[str, Any], dotted: str, default: Any = "") -> Any:
    d: Any = settings
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d


def builtin_delivery(method: str, settings: Dict[str, Any], htmap_dir: Path,
                     transplant_prefix: Optional[Path] = None) -> Tuple[str, Dict[str, str], List[str], str]:
    """(wrapper script text, extra descriptors, extra input files, requirements) for ``method``."""
    descriptors: Dict[str, str] = {}
    inputs: List[str] = []
    requirements = ""
    setup: List[str] = []
    if method == "assume":
        python = "python3"
    elif method == "shared":
        python = sys.executable
    elif method == "docker":
        python = "python3"
        descriptors["universe"] = "docker"
        descriptors["docker_image"] = str(_setting(settings, "DOCKER.IMAGE", "python:3"))
    elif method == "singularity":
        python = "python3"
        descriptors["universe"] = "container"
        descriptors["container_image"] = str(_setting(settings, "SINGULARITY.IMAGE", "docker://python:3"))
    elif method == "transplant":
        prefix = Path(transplant_prefix or sys.prefix)
        cache = transplant_cache_dir(settings, htmap_dir)
        if _setting(settings, "TRANSPLANT.ASSUME_EXISTS", False):
            name = transplant_name(prefix_fingerprint(prefix))
        else:
            path, _ = pack_transplant(prefix, cache)
            name = path.name
        alternate = str(_setting(settings, "TRANSPLANT.ALTERNATE_INPUT_PATH", "") or "")
        inputs.append(f"{alternate.rstrip('/')}/{name}" if alternate else str(cache / name))
        setup = transplant_setup(name)
        python = f"./{TRANSPLANT_UNPACK_DIR}/bin/python3"
        # the packed interpreter runs only where it was built
        arch = platform.machine().upper().replace("AMD64", "X86_64")
        requirements = f'(TARGET.OpSys == "LINUX") && (TARGET.Arch == "{arch}")' if sys.platform.startswith("linux") else ""
    else:
        raise exceptions.UnknownPythonDeliveryMethod(f"{method!r} is not a built-in delivery method")
    return wrapper_script(python, setup, method), descriptors, inputs, requirements
