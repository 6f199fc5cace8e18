"""How a Map shows itself in Jupyter: tag, size, a bar of status counts, hints to errors and holds."""
from __future__ import annotations

from html import escape
from typing import Any, Dict, List, Sequence, Tuple

from . import exceptions
from .state import ComponentStatus

# one colour per status, shared with htmap.plotting
STATUS_COLORS: Dict[ComponentStatus, str] = {
    ComponentStatus.COMPLETED: "#2ca02c",
    ComponentStatus.RUNNING: "#1f77b4",
    ComponentStatus.IDLE: "#c7c7c7",
    ComponentStatus.UNMATERIALIZED: "#e0e0e0",
    ComponentStatus.UNKNOWN: "#9e9e9e",  # shown as "submitted": no event seen yet
    ComponentStatus.SUSPENDED: "#9467bd",
    ComponentStatus.HELD: "#ff7f0e",
    ComponentStatus.ERRORED: "#d62728",
    ComponentStatus.REMOVED: "#e377c2",
}

# order of the bar's segments: finished first, then what still needs time or attention
BAR_ORDER: Tuple[ComponentStatus, ...] = (
    ComponentStatus.COMPLETED, ComponentStatus.ERRORED, ComponentStatus.HELD, ComponentStatus.REMOVED,
    ComponentStatus.SUSPENDED, ComponentStatus.RUNNING, ComponentStatus.IDLE, ComponentStatus.UNMATERIALIZED,
    ComponentStatus.UNKNOWN,
)

MAX_DETAILS = 3  # errors and holds shown by name; the rest are counted

# Jupyter's theme variables (light and dark themes), with a fallback outside JupyterLab
TEXT = "var(--jp-ui-font-color1, inherit)"
MUTED = "var(--jp-ui-font-color2, #666)"
TRACK = "var(--jp-layout-color2, rgba(128, 128, 128, 0.15))"
DONE = "var(--jp-success-color1, #388e3c)"
FAILED = "var(--jp-error-color1, #d32f2f)"

_BOX = ("font-family: var(--jp-ui-font-family, -apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, "
        f"sans-serif); font-size: 13px; line-height: 1.45; max-width: 48em; padding: 0.4em 0; color: {TEXT};")
_BAR = ("display: flex; width: 100%; height: 14px; border-radius: 3px; overflow: hidden; "
        f"background: {TRACK}; margin: 0.35em 0;")
_CODE = "font-family: var(--jp-code-font-family, SFMono-Regular, Menlo, Consolas, monospace); font-size: 12px;"


def _code(text: str) -> str:
    return f'<code style="{_CODE}">{escape(text)}</code>'


def _components(cs: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(c) for c in cs[:limit])
    return shown + (f", … ({len(cs) - limit} more)" if len(cs) > limit else "")


def status_label(status: ComponentStatus) -> str:
    """How the card names a status: a map with no event yet is "submitted", not "unknown"."""
    return "submitted" if status is ComponentStatus.UNKNOWN else status.value.lower()


def _about(c: int, text: str) -> str:
    """``component c: text``, without saying "component c" twice when the text starts with it."""
    if text.startswith(f"component {c} ") or text.startswith(f"component {c}:"):
        return text
    return f"component {c}: {text}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _first_line(text: str, limit: int = 200) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def status_bar(counts: Dict[ComponentStatus, int], total: int) -> str:
    """A stacked horizontal bar: one segment per status, width proportional to its count."""
    segments = []
    for status in BAR_ORDER:
        n = counts.get(status, 0)
        if not n or not total:
            continue
        pct = 100.0 * n / total
        segments.append(
            f'<div data-status="{status.value}" data-count="{n}" title="{status_label(status)}: {n} ({pct:.1f}%)" '
            f'style="width: {pct:.3f}%; background: {STATUS_COLORS[status]};"></div>'
        )
    label = ", ".join(f"{counts[s]} {status_label(s)}" for s in BAR_ORDER if counts.get(s))
    return f'<div class="htmap-bar" role="img" aria-label="{escape(label)}" style="{_BAR}">{"".join(segments)}</div>'


def legend(counts: Dict[ComponentStatus, int]) -> str:
    items = []
    for status in BAR_ORDER:
        n = counts.get(status, 0)
        if not n:
            continue
        swatch = (f'<span style="display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; '
                  f'background: {STATUS_COLORS[status]}; margin-right: 0.3em; vertical-align: -0.05em;"></span>')
        items.append(f'<span class="htmap-count" data-status="{status.value}" style="margin-right: 1em;">'
                     f'{swatch}{n} {status_label(status)}</span>')
    return f'<div class="htmap-legend">{"".join(items)}</div>'


def _error_hints(m: Any, errored: Sequence[int]) -> List[str]:
    lines = []
    for c in errored[:MAX_DETAILS]:
        try:
            e = m.get_err(c, timeout=0)
        except (exceptions.HTMapException, OSError):
            lines.append(f"component {c}: no error report found")
            continue
        what = f"{e.exception_type}: {e.exception_msg}" if e.kind == "exception" else e.exception_msg
        lines.append(_about(c, _first_line(what)))
    return lines


def _hold_hints(m: Any, held: Sequence[int]) -> List[str]:
    holds = m.holds
    lines = []
    for c in held[:MAX_DETAILS]:
        h = holds.get(c)
        reason = _first_line(h.reason) if h is not None and h.reason else "no reason given"
        lines.append(_about(c, reason))
    return lines


def _hint(color: str, title: str, details: List[str], advice: str) -> str:
    body = "".join(f'<li style="margin: 0;">{escape(d)}</li>' for d in details)
    inner = f'<ul style="margin: 0.1em 0 0.1em 1.2em; padding: 0;">{body}</ul>' if body else ""
    return (f'<div class="htmap-hint" style="border-left: 3px solid {color}; padding: 0.1em 0 0.1em 0.6em; '
            f'margin: 0.3em 0;"><strong>{escape(title)}</strong>{inner}<div>{advice}</div></div>')


def map_html(m: Any) -> str:
    """The HTML Jupyter shows for a Map (never raises: a notebook should always show something)."""
    tag = getattr(m, "_tag", "?")
    try:
        return _map_html(m, tag)
    except exceptions.MapWasRemoved:
        return (f'<div class="htmap-map" style="{_BOX}"><strong>Map</strong> {_code(tag)} '
                f'<span style="color: {MUTED};">(removed)</span></div>')
    except Exception as e:  # e.g. the map's files vanished or its engine cannot be reached
        return (f'<div class="htmap-map" style="{_BOX}"><strong>Map</strong> {_code(tag)} '
                f'<span style="color: {FAILED};">status unavailable: {escape(type(e).__name__)}: '
                f'{escape(_first_line(str(e)))}</span></div>')


def _map_html(m: Any, tag: str) -> str:
    total = len(m)
    counts = m.status_counts()
    by_status = m.components_by_status()
    transient = m.is_transient
    engine = m.engine

    header = [f'<strong>Map</strong> {_code(tag)}',
              f'<span style="color: {MUTED};">{_plural(total, "component")} · {escape(engine)} engine'
              f'{" · transient" if transient else ""}</span>']
    parts = [f'<div class="htmap-title">{" ".join(header)}</div>', status_bar(counts, total), legend(counts)]

    errored = list(by_status.get(ComponentStatus.ERRORED, ()))
    held = list(by_status.get(ComponentStatus.HELD, ()))
    removed = list(by_status.get(ComponentStatus.REMOVED, ()))
    q = repr(tag)
    if errored:
        parts.append(_hint(
            STATUS_COLORS[ComponentStatus.ERRORED],
            f"{_plural(len(errored), 'component')} errored ({_components(errored)})",
            _error_hints(m, errored),
            f"Full reports: {_code('m.errors_so_far')}, {_code(f'htmap.load({q}).get_err({errored[0]})')} "
            f"or {_code(f'htmap errors {tag}')}; run them again with {_code(f'htmap rerun components {tag} ...')}.",
        ))
    if held:
        parts.append(_hint(
            STATUS_COLORS[ComponentStatus.HELD],
            f"{_plural(len(held), 'component')} held ({_components(held)})",
            _hold_hints(m, held),
            f"Reasons: {_code('m.hold_report()')} or {_code(f'htmap reasons {tag}')}; "
            f"after fixing the cause, {_code('m.release()')} or {_code(f'htmap release {tag}')}.",
        ))
    if removed:
        parts.append(_hint(STATUS_COLORS[ComponentStatus.REMOVED],
                           f"{_plural(len(removed), 'component')} removed ({_components(removed)})", [],
                           f"Run them again with {_code('m.rerun([...])')}."))
    done = counts.get(ComponentStatus.COMPLETED, 0)
    if total and done == total:
        parts.append(f'<div class="htmap-done" style="color: {DONE};">All components completed: '
                     f'{_code("list(m)")} gives their outputs.</div>')
    elif not errored and not held:
        waiting = total - done - len(removed)
        if waiting:
            parts.append(f'<div class="htmap-active" style="color: {MUTED};">{waiting} still to run: '
                         f'{_code("m.wait(show_progress_bar=True)")} waits for them.</div>')
    return f'<div class="htmap-map" style="{_BOX}">{"".join(parts)}</div>'
