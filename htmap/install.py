"""How to install what an optional feature needs: the one place install hints come from.

This project is distributed as **htmap-ng** (it installs the package ``htmap``). The name
``htmap`` on PyPI is the archived HTMap 0.6.1, so no hint of ours may install that name:
a hint names the requirement itself (what the extra would add) and the extra of htmap-ng,
installed from its checkout or wheel.
"""
from __future__ import annotations

import sys
from typing import Dict, Tuple

DISTRIBUTION = "htmap-ng"

# the optional-dependencies of pyproject.toml (tests/test_packaging.py keeps them in step)
EXTRAS: Dict[str, Tuple[str, ...]] = {
    "htcondor": ("htcondor>=24",),
    "plot": ("matplotlib>=3.5",),
    "jupyter": ("ipywidgets>=8",),
}


def hint(extra: str) -> str:
    """The command that installs ``extra``'s requirements into this Python, and the extra itself.

    Parameters
    ----------
    extra
        The name of one of htmap-ng's extras (``htcondor``, ``plot``, ``jupyter``).

    Returns
    -------
    str
        For example ``python3 -m pip install 'htcondor>=24' (htmap-ng's "htcondor" extra: pip
        install '<htmap-ng checkout or wheel>[htcondor]')``.
    """
    requirements = " ".join(f"'{r}'" for r in EXTRAS[extra])
    python = sys.executable or "python3"
    return (f"{python} -m pip install {requirements} ({DISTRIBUTION}'s \"{extra}\" extra: "
            f"pip install '<{DISTRIBUTION} checkout or wheel>[{extra}]')")
