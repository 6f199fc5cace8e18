"""What a user sees of a failed or held component."""
from __future__ import annotations

import datetime
import textwrap
from dataclasses import dataclass
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class ComponentHold:
    """Why a component is held: the batch system's (or the user's) reason and code.

    Parameters
    ----------
    code : int or None
        The hold code (HTCondor's ``HoldReasonCode``, or htmap's own), if there is one.
    reason : str
        The hold reason.
    """

    code: Optional[int]
    reason: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.reason}" if self.code is not None else self.reason


class ComponentError:
    """The error report of a component that raised an exception or failed.

    Get them from ``Map.errors``, ``Map.get_err`` or the ``component_error`` attribute of a
    ``MapComponentError``. ``str()`` of one is its readable report.

    Parameters
    ----------
    map_tag : str
        The tag of the map.
    component : int
        The component's index.
    report : dict
        The report written where the component ran: exception type and message, traceback with
        local variables, node and Python information, working-directory listing, stderr tail.
    history : list, optional
        ``(time, kind, reason)`` entries of what happened to the component (holds, retries, ...).

    Attributes
    ----------
    kind : str
        ``"exception"`` if the function raised, else the kind of failure.
    exception_type, exception_msg : str
        The exception's class name and message (or a description of the failure).
    traceback : str
        The formatted traceback.
    node_info, python_info : dict
        Where the component ran, and with which Python.
    """

    def __init__(self, map_tag: str, component: int, report: Dict[str, Any], history: Optional[List] = None):
        self.map_tag = map_tag
        self.component = component
        self._report = report
        self.kind: str = report.get("kind", "exception")
        self.exception_type: str = report.get("exception_type", "")
        self.exception_msg: str = report.get("exception_msg", "")
        self.node_info: Dict[str, Any] = report.get("node_info", {})
        self.python_info: Dict[str, Any] = report.get("python_info", {})
        self.scratch_dir_contents: List[str] = report.get("scratch_dir_contents", [])
        self.stack_summary: List[Dict[str, Any]] = report.get("stack_summary", [])
        self.traceback: str = report.get("traceback", "")
        self.stderr_tail: str = report.get("stderr_tail", "")
        self.start_time = report.get("start_time")
        self.end_time = report.get("end_time")
        self.history = list(history or [])

    def __repr__(self) -> str:
        return f"<ComponentError(map={self.map_tag!r}, component={self.component}, {self.exception_type}: {self.exception_msg})>"

    def report(self) -> str:
        """The readable error report: exception, node, Python, history, traceback with local
        variables, and the end of stderr, in a banner naming the map and component.

        Returns
        -------
        str
            The report.
        """
        banner = f" Start error report for component {self.component} of map {self.map_tag} "
        lines = [banner.center(80, "="), ""]
        title = "Exception" if self.kind == "exception" else "Failure"
        lines.append(f"{title}: {self.exception_type}: {self.exception_msg}" if self.kind == "exception"
                     else f"{title}: {self.exception_msg}")
        lines.append("")
        lines.append(f"Node: {self.node_info.get('hostname', '?')} ({self.node_info.get('ip', '?')}), "
                     f"{self.node_info.get('platform', '')}")
        lines.append(f"Python: {self.python_info.get('executable', '?')} "
                     f"{str(self.python_info.get('version', '?')).split()[0]}")
        if self.start_time and self.end_time:
            start = datetime.datetime.fromtimestamp(self.start_time).isoformat(timespec="seconds")
            lines.append(f"Started {start}, ran {self.end_time - self.start_time:.3f} s")
        lines.append(f"Scratch directory contents: {', '.join(self.scratch_dir_contents) or '(empty)'}")
        if self.history:
            lines.append("")
            lines.append("History:")
            for t, kind, reason in self.history:
                when = datetime.datetime.fromtimestamp(t).isoformat(timespec="seconds")
                lines.append(f"  {when} {kind}{': ' + reason if reason else ''}")
        if self.stack_summary:
            lines.append("")
            lines.append("Traceback (most recent call last):")
            for frame in self.stack_summary:
                lines.append(f'  File "{frame["filename"]}", line {frame["lineno"]}, in {frame["name"]}')
                if frame.get("line"):
                    lines.append(f"    {frame['line']}")
                for name, value in frame.get("locals", {}).items():
                    lines.append(f"      {name} = {value}")
            lines.append(f"{self.exception_type}: {self.exception_msg}")
        if self.stderr_tail:
            lines.append("")
            lines.append("End of stderr:")
            lines.append(textwrap.indent(self.stderr_tail.rstrip(), "  "))
        lines.append("")
        lines.append(f" End error report for component {self.component} of map {self.map_tag} ".center(80, "="))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()
