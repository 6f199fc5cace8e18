"""A picture of a map's life: each component's time idle and running, and a histogram of run times.

matplotlib is an optional extra: ``pip install 'htmap[plot]'``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from . import exceptions
from .html import STATUS_COLORS
from .state import STATUSES, ComponentStatus

INSTALL_HINT = "pip install 'htmap[plot]'"
IDLE_COLOR = "#d9d9d9"
DEFAULT_MAX_COMPONENTS = 1000  # rows drawn; bigger maps are sampled evenly


class PlottingUnavailable(exceptions.HTMapException, ImportError):
    """matplotlib is not installed."""


def _matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlottingUnavailable(
            f"plotting a map needs matplotlib, which is not installed ({e}); install it with: {INSTALL_HINT}"
        ) from None
    return Figure


def timeline(m: Any) -> Dict[str, Any]:
    """Per-component times (seconds since the map's first submission) and final statuses.

    ``idle``: (start, length) waiting in the queue before the last run; ``run``: (start,
    length) of the last run (still running: up to now); ``status``: the component's status.
    """
    m.status_counts()  # fold the engine's latest events into the map's state
    state = m._state
    n = len(m)
    now = time.time()
    queued = [q for q in state.queued_at if q > 0]
    started = [s for s in state.started_at if s > 0]
    t0 = min(queued + started) if (queued or started) else now
    idle, run, statuses = [], [], []
    for c in range(n):
        status = STATUSES[state.status[c]]
        q, s, e = state.queued_at[c], state.started_at[c], state.ended_at[c]
        if s > 0:
            end = _run_end(state, c, status, s, e, now)
            run.append((s - t0, max(0.0, end - s)))
            idle.append((q - t0, max(0.0, s - q)) if q > 0 else (s - t0, 0.0))
        else:
            run.append(None)
            waiting = status in (ComponentStatus.IDLE, ComponentStatus.UNMATERIALIZED, ComponentStatus.HELD)
            idle.append((q - t0, max(0.0, now - q)) if q > 0 and waiting else None)
        statuses.append(status)
    runtimes = [(float(state.runtime[c]), statuses[c]) for c in range(n)
                if statuses[c] in (ComponentStatus.COMPLETED, ComponentStatus.ERRORED)]
    return {"t0": t0, "idle": idle, "run": run, "status": statuses, "runtimes": runtimes}


def _run_end(state: Any, c: int, status: ComponentStatus, started: float, ended: float, now: float) -> float:
    """When the component's last run ended: its end, now (still running), or when it was held."""
    if ended >= started:
        return ended
    if status in (ComponentStatus.RUNNING, ComponentStatus.SUSPENDED):
        return now
    if status is ComponentStatus.HELD:
        held = [t for t, kind, _reason in state.history.get(c, []) if kind == "held" and t >= started]
        if held:
            return held[-1]
    return started


def _sample(n: int, limit: int) -> List[int]:
    if n <= limit:
        return list(range(n))
    step = n / limit
    return sorted({int(i * step) for i in range(limit)})


def plot_map(m: Any, path: Union[str, Path, None] = None, *, figsize: Optional[Tuple[float, float]] = None,
             max_components: int = DEFAULT_MAX_COMPONENTS, title: Optional[str] = None, dpi: int = 100):
    """Draw the map's timeline and run-time histogram; save to ``path`` if given; return the Figure.

    Without ``path`` the figure is made through pyplot, so Jupyter shows it inline.
    """
    Figure = _matplotlib()
    data = timeline(m)
    n = len(m)
    rows = _sample(n, max(1, int(max_components)))
    height = min(12.0, 3.0 + 0.03 * len(rows))
    size = figsize or (9.0, height + 2.6)
    if path is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=size, dpi=dpi, constrained_layout=True)
    else:
        fig = Figure(figsize=size, dpi=dpi, constrained_layout=True)
    ax, hist = fig.subplots(2, 1, gridspec_kw={"height_ratios": [height, 2.4]})

    # -- timeline: one row per component, idle in grey, running coloured by status
    bar_h = 0.8 if len(rows) <= 200 else 1.0
    # many thin rows: an edge in the bar's own colour keeps each at least a pixel high
    edge = {"linewidth": 0} if len(rows) <= 200 else {"linewidth": 0.4, "antialiased": False}
    idle_segments: List[Tuple[float, float, float]] = []
    run_by_status: Dict[ComponentStatus, List[Tuple[float, float, float]]] = {}
    for c in rows:
        if data["idle"][c] is not None:
            idle_segments.append((c, *data["idle"][c]))
        if data["run"][c] is not None:
            run_by_status.setdefault(data["status"][c], []).append((c, *data["run"][c]))
    if idle_segments:
        ax.barh([s[0] for s in idle_segments], [s[2] for s in idle_segments], left=[s[1] for s in idle_segments],
                height=bar_h, color=IDLE_COLOR, edgecolor=IDLE_COLOR, label="idle", **edge)
    for status in (ComponentStatus.COMPLETED, ComponentStatus.ERRORED, ComponentStatus.HELD,
                   ComponentStatus.REMOVED, ComponentStatus.SUSPENDED, ComponentStatus.RUNNING,
                   ComponentStatus.IDLE, ComponentStatus.UNKNOWN, ComponentStatus.UNMATERIALIZED):
        segs = run_by_status.get(status)
        if not segs:
            continue
        label = "running" if status is ComponentStatus.RUNNING else f"ran, {status.value.lower()}"
        ax.barh([s[0] for s in segs], [max(s[2], 1e-6) for s in segs], left=[s[1] for s in segs], height=bar_h,
                color=STATUS_COLORS[status], edgecolor=STATUS_COLORS[status], label=label, **edge)
    if not idle_segments and not run_by_status:
        ax.text(0.5, 0.5, "no component has been queued yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(n - 0.5 if n else 0.5, -0.5)  # component 0 at the top
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds since the map was submitted")
    ax.set_ylabel("component")
    sampled = f" ({len(rows)} of them shown, evenly spaced)" if len(rows) < n else ""
    ax.set_title(title or f"map {m.tag}: {n} component{'s' if n != 1 else ''}{sampled}")
    if idle_segments or run_by_status:
        ax.legend(loc="upper right", fontsize="small", frameon=False)
    ax.grid(axis="x", alpha=0.3)

    # -- histogram of run times of finished components, by final status
    runtimes = data["runtimes"]
    if runtimes:
        groups = [[r for r, s in runtimes if s is status] for status in (ComponentStatus.COMPLETED,
                                                                          ComponentStatus.ERRORED)]
        labels = ["completed", "errored"]
        colors = [STATUS_COLORS[ComponentStatus.COMPLETED], STATUS_COLORS[ComponentStatus.ERRORED]]
        keep = [i for i, g in enumerate(groups) if g]
        bins = min(50, max(5, int(len(runtimes) ** 0.5)))
        from matplotlib.patches import Patch

        hist.hist([groups[i] for i in keep], bins=bins, stacked=True, color=[colors[i] for i in keep])
        hist.legend(handles=[Patch(color=colors[i], label=f"{labels[i]} ({len(groups[i])})") for i in keep],
                    loc="best", fontsize="small", frameon=False)
    else:
        hist.text(0.5, 0.5, "no component has finished yet", ha="center", va="center", transform=hist.transAxes)
    hist.set_xlabel("run time (seconds)")
    hist.set_ylabel("components")
    hist.set_title("run times of finished components", fontsize="medium")

    if path is not None:
        fig.savefig(str(path))
    return fig
