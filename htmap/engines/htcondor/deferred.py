"""Acts on components that are not jobs yet (late materialization).

The schedd can hold, release and remove a cluster's factory as a whole (a hold of the
cluster id pauses it), but an act or edit of *some* components reaches only the jobs already
materialized. What is meant for the others is written to ``engine/deferred`` (shipped to
every job of a late cluster, read when the job starts), one line each::

    hold C                 hold component C when it starts
    remove C               remove it when it starts
    set C|* ATTR VALUE     run it only once its job ad has ATTR = VALUE (an edit)

The job wrapper checks its own component (see ``delivery.wrapper_script``) and exits with
``HOLD_EXIT`` / ``REMOVE_EXIT`` / ``EDIT_EXIT``; the submit description turns those into
a hold with a clear reason, a removal, or a hold that the engine answers by editing the
job and releasing it (``engine.apply_deferred_edits``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Set, Tuple

from ... import store

FILE_NAME = "deferred"
REMOVE_EXIT = 84
HOLD_EXIT = 85
EDIT_EXIT = 87
REMOVE_REASON = "removed by the user (htmap remove) before it started"
EDIT_REASON = "waiting for htmap to apply an edit of its resources (any htmap command on this map applies it)"


def path(engine_dir: Path) -> Path:
    return engine_dir / FILE_NAME


def read(engine_dir: Path) -> List[str]:
    try:
        return [line for line in path(engine_dir).read_text().splitlines() if line]
    except FileNotFoundError:
        return []


def write(engine_dir: Path, lines: Iterable[str]) -> None:
    store.write_text_atomic(path(engine_dir), "".join(f"{line}\n" for line in lines))


def add(engine_dir: Path, lines: Iterable[str]) -> None:
    existing = read(engine_dir)
    write(engine_dir, existing + [line for line in lines if line not in existing])


def drop(engine_dir: Path, verbs: Set[str], components: Optional[Iterable[int]]) -> None:
    """Forget ``verbs`` lines of ``components`` (all components when None)."""
    wanted = None if components is None else {str(c) for c in components}
    lines = read(engine_dir)
    kept = [line for line in lines
            if not (line.split()[0] in verbs and (wanted is None or line.split()[1] in wanted))]
    if kept != lines:
        write(engine_dir, kept)


def edits_for(engine_dir: Path, component: int) -> List[Tuple[str, str]]:
    """The (attribute, value) edits meant for ``component`` (its own after the map's)."""
    out = []
    for line in read(engine_dir):
        verb, who, *rest = line.split()
        if verb == "set" and who in ("*", str(component)) and len(rest) == 2:
            out.append((rest[0], rest[1]))
    return out


def wrapper_lines() -> List[str]:
    """The wrapper's check of its component's deferred acts (C: the component)."""
    return [
        'if [ -s deferred ]; then',
        '    if grep -qx "remove $C" deferred; then',
        '        echo "htmap: component $C was removed before it started" >&2; exit ' + str(REMOVE_EXIT),
        '    fi',
        '    if grep -qx "hold $C" deferred; then',
        '        echo "htmap: component $C was held before it started" >&2; exit ' + str(HOLD_EXIT),
        '    fi',
        '    for edit in $(sed -n "s/^set \\($C\\|\\*\\) \\([A-Za-z_]*\\) \\(.*\\)$/\\2=\\3/p" deferred); do',
        '        if ! grep -qx "${edit%%=*} = ${edit#*=}" "${_CONDOR_JOB_AD:-.job.ad}"; then',
        '            echo "htmap: component $C waits for its edit ${edit%%=*} = ${edit#*=}" >&2; exit ' + str(EDIT_EXIT),
        '        fi',
        '    done',
        'fi',
    ]
