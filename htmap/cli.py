"""The ``htmap`` command: everything a user does with maps, from the shell.

Conventions (documented in docs/cli.md):

* results go to stdout, messages about failures to stderr as ``ERROR: ...``;
* exit status 0 on success, 1 when htmap could not do what was asked (or, for ``wait``,
  when a component failed or is held), 2 for a usage error, 124 when a ``--timeout``
  ran out, 130 when interrupted;
* colour only when stdout is a terminal and ``NO_COLOR`` is unset or empty (``--color`` /
  ``--no-color`` override);
* commands that act on maps take tags as arguments, ``-p/--pattern GLOB`` (repeatable),
  ``--all``, or, when none of those is given and standard input is not a terminal, the
  whitespace-separated tags read from standard input.
"""
from __future__ import annotations

import csv
import difflib
import fnmatch
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import importlib

import click
import click.shell_completion

import htmap
from . import exceptions, management, mapstore
from .management import aligned_table

# ``htmap.settings`` is the Settings object; the module is reached through sys.modules
settings_module = importlib.import_module("htmap.settings")
from .state import ComponentStatus

logger = logging.getLogger(__name__)

CONTEXT_SETTINGS = dict(help_option_names=["-h", "--help"], max_content_width=100)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a process killed by it

STATE_COLUMNS = management.STATUS_COLUMNS
META_COLUMNS = management.META_COLUMNS
IDENTITY_COLUMNS = management.IDENTITY_COLUMNS

STATUS_COLORS = {
    ComponentStatus.COMPLETED: "green",
    ComponentStatus.RUNNING: "cyan",
    ComponentStatus.IDLE: "yellow",
    ComponentStatus.UNMATERIALIZED: "yellow",
    ComponentStatus.UNKNOWN: None,
    ComponentStatus.SUSPENDED: "red",
    ComponentStatus.HELD: "red",
    ComponentStatus.ERRORED: "red",
    ComponentStatus.REMOVED: "magenta",
}


# -- errors -----------------------------------------------------------------------

class CLIError(click.ClickException):
    """A failure the user can act on: ``ERROR: <message>`` on stderr, then exit non-zero."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, exit_code: int = EXIT_ERROR):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"ERROR: {self.format_message()}", err=True)


def _one_line(text: Any) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] + (" ..." if len(lines) > 1 else "")


class HTMapGroup(click.Group):
    """Turns htmap's exceptions into ``ERROR: ...`` lines and exit codes instead of tracebacks."""

    def resolve_command(self, ctx: click.Context, args: List[str]):
        """A mistyped command gets a suggestion, also with the click 8.1 that Python 3.9 installs."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as e:
            name = args[0] if args else ""
            if getattr(e, "possibilities", None):  # click >= 8.2 suggests itself
                raise
            if name and not name.startswith("-") and "Did you mean" not in e.message:
                close = difflib.get_close_matches(name, self.list_commands(ctx), n=3)
                if close:
                    e.message += f" Did you mean {' or '.join(repr(c) for c in close)}?"
            raise

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # `htmap ... | head`: the reader has gone; stop quietly
            _silence_stdout()
            ctx.exit(EXIT_BROKEN_PIPE)
        except exceptions.TimeoutError as e:
            raise CLIError(str(e), EXIT_TIMEOUT) from e
        except exceptions.TagNotFound as e:
            raise CLIError(str(e)) from e
        except (exceptions.HTMapException, OSError, NotImplementedError, IndexError, ValueError) as e:
            if _verbose(ctx):
                traceback.print_exc(file=sys.stderr)
            raise CLIError(str(e) or type(e).__name__) from e
        except Exception as e:  # a bug: say what happened, the traceback only with -v
            if _verbose(ctx):
                traceback.print_exc(file=sys.stderr)
                raise CLIError(f"unexpected {type(e).__name__}: {e}") from e
            raise CLIError(f"unexpected {type(e).__name__}: {e} (run with -v for the traceback)") from e


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def _verbose(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("verbose"))


# -- output helpers ------------------------------------------------------------------

def _no_color_env() -> bool:
    return bool(os.environ.get("NO_COLOR", ""))


def _stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def use_color(flag: Optional[bool] = None) -> bool:
    """``--color``/``--no-color`` if given, else: stdout is a terminal and NO_COLOR is not set."""
    if flag is not None:
        return flag
    return _stdout_is_tty() and not _no_color_env()


def style(text: str, color: bool, **kwargs: Any) -> str:
    return click.style(text, **kwargs) if color else text


def echo(text: str = "", color: bool = False, err: bool = False, nl: bool = True) -> None:
    click.echo(text, color=color, err=err, nl=nl)


def warn(message: str) -> None:
    click.echo(f"WARNING: {message}", err=True)


# -- selecting maps ----------------------------------------------------------------

def _stdin_is_tty() -> bool:
    stream = sys.stdin
    if stream is None:
        return True  # nothing to read
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return True


def _read_stdin_tags() -> List[str]:
    try:
        return sys.stdin.read().split()
    except (OSError, ValueError):
        return []


class BashComplete(click.shell_completion.BashComplete):
    """click's bash completion, for words with ``:`` (``htmap path TAG:PART``).

    bash splits ``TAG:ev`` at the ``:`` (it is in ``COMP_WORDBREAKS``) and replaces only the
    part after it; this joins the parts again for htmap, and gives back only what bash replaces.
    """

    _cut = ""

    def get_completion_args(self) -> Tuple[List[str], str]:
        words = click.shell_completion.split_arg_string(os.environ.get("COMP_WORDS", ""))
        cword = int(os.environ.get("COMP_CWORD", "0"))
        current = words[cword] if cword < len(words) else ""
        joined: List[str] = []
        for i, word in enumerate(words[:cword + 1]):
            if joined and i > 1 and (word == ":" or joined[-1].endswith(":")):
                joined[-1] += word
            else:
                joined.append(word)
        if cword >= len(words):
            joined.append("")
        incomplete = joined[-1]
        self._cut = incomplete[:len(incomplete) - len(current)] if incomplete.endswith(current) else ""
        return joined[1:-1], incomplete

    def format_completion(self, item) -> str:
        value = item.value
        if self._cut and value.startswith(self._cut):
            value = value[len(self._cut):]
        return f"{item.type},{value}"


click.shell_completion.add_completion_class(BashComplete, "bash")


def complete_tags(ctx, param, incomplete: str) -> List[str]:
    try:
        return [t for t in htmap.get_tags() if t.startswith(incomplete)]
    except Exception:  # completion must never print a traceback
        return []


def tag_selection(func: Callable) -> Callable:
    """``TAGS...``, ``-p/--pattern GLOB`` (repeatable) and ``--all``."""
    decorators = [
        click.argument("tags", nargs=-1, shell_complete=complete_tags),
        click.option("-p", "--pattern", "patterns", multiple=True, metavar="GLOB",
                     help="Act on maps whose tags match this glob pattern (quote it; repeatable)."),
        click.option("--all", "all_", is_flag=True, default=False, help="Act on every map."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def existing_tags(*patterns: str) -> List[str]:
    """Tags of maps that exist (not ones still being created), optionally matching glob patterns."""
    return [t for t in htmap.get_tags() if not patterns or any(fnmatch.fnmatchcase(t, p) for p in patterns)]


def select_tags(tags: Sequence[str], patterns: Sequence[str], all_: bool, *, default_all: bool = False,
                keep_damaged: bool = False) -> List[str]:
    """The tags a command acts on, in order, without repeats.

    Standard input is read only when no tag, pattern or ``--all`` was given and it is not
    a terminal. With ``default_all`` (``status``) no selection at all means every map.
    A damaged map found by ``--all`` or a pattern is left out with a warning (unless
    ``keep_damaged``): one damaged map never stops a command on the others.
    """
    named = set(tags)
    return [t for t in _selected(tags, patterns, all_, default_all)
            if keep_damaged or t in named or not _damaged(t)]


def _damaged(tag: str) -> bool:
    try:
        htmap.load(tag)
    except exceptions.MapIsDamaged as e:
        _warn_once(str(e))
        return True
    except (exceptions.TagNotFound, exceptions.MapWasRemoved):
        pass
    return False


def _selected(tags: Sequence[str], patterns: Sequence[str], all_: bool, default_all: bool) -> List[str]:
    chosen: List[str] = list(tags)
    if all_:
        chosen += htmap.get_tags()
    for pattern in patterns:
        found = existing_tags(pattern)
        if not found:
            warn(f"no map tag matches the pattern {pattern!r}")
        chosen += found
    if not (tags or patterns or all_):
        if not _stdin_is_tty():
            chosen = _read_stdin_tags()
            if not chosen and not default_all:
                raise click.UsageError("no maps selected: standard input held no tags; give tags, "
                                       "-p/--pattern GLOB or --all")
        elif default_all:
            chosen = list(htmap.get_tags())
        else:
            raise click.UsageError("no maps selected: give tags, -p/--pattern GLOB, --all, or tags on standard input")
        if not chosen and default_all:
            chosen = list(htmap.get_tags())
    seen = set()
    out = []
    for t in chosen:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def no_such_tag(tag: str) -> CLIError:
    existing = existing_tags()
    close = mapstore.closest_tags(tag) if existing else []
    if close:
        hint = f"; the closest tags are: {', '.join(close)}"
    elif existing:
        hint = "; `htmap tags` lists the existing tags"
    else:
        hint = " (there are no maps)"
    return CLIError(f"no map with tag {tag}{hint}")


def load_map(tag: str) -> "htmap.Map":
    try:
        return htmap.load(tag)
    except exceptions.TagNotFound:
        raise no_such_tag(tag) from None


def load_all(tags: Iterable[str]) -> List["htmap.Map"]:
    """Load every map first, so that one unknown tag stops the command before it acts."""
    return [load_map(t) for t in tags]


# -- the group -----------------------------------------------------------------------

def _start_logging() -> None:
    log = logging.getLogger("htmap")
    if any(getattr(h, "_htmap_cli", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(stream=sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._htmap_cli = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)


@click.group(cls=HTMapGroup, context_settings=CONTEXT_SETTINGS)
@click.option("-v", "--verbose", is_flag=True, default=False,
              help="Log what htmap does to stderr, and show tracebacks of unexpected errors.")
@click.version_option(htmap.__version__, "--version", prog_name="htmap", message="%(prog)s version %(version)s")
def cli(verbose: bool) -> None:
    """htmap: map Python functions onto HTCondor, Slurm or this machine as persistent, named maps.

    Commands that act on maps take tags as arguments, -p/--pattern GLOB, --all, or tags
    on standard input (when it is not a terminal), e.g. `htmap tags -p 'sim-*' | htmap hold`.
    """
    if verbose:
        _start_logging()
    logger.debug("htmap %s called with %r", htmap.__version__, sys.argv[1:])
    htmap.settings["CLI.IS_CLI"] = True
    warnings.showwarning = _show_warning
    _warned.clear()  # each command says each warning once


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """htmap's warnings (a restarted supervisor, a damaged map) as ``WARNING: ...`` lines, no source line."""
    warn(str(message))


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The console script ``htmap`` (and ``python -m htmap``)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="htmap")
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)


# -- listing and status -------------------------------------------------------------

@cli.command()
@click.option("-p", "--pattern", "patterns", multiple=True, metavar="GLOB",
              help="Only tags matching this glob pattern (repeatable).")
def tags(patterns: Tuple[str, ...]) -> None:
    """Print the tags of existing maps, one per line."""
    found = existing_tags(*patterns)
    for tag in found:
        click.echo(tag)
    for tag in found:
        info = mapstore.examine(tag)
        if info.state == "damaged":
            warn(mapstore.damaged_hint(tag, info.problem or ""))


def _status_row(m: "htmap.Map", meta: bool) -> Dict[str, Any]:
    return management.status_rows([m], include_state=True, include_meta=meta)[0]


def _status_rows(tags: Sequence[str], meta: bool, strict: bool) -> List[Tuple["htmap.Map", Dict[str, Any]]]:
    out = []
    for tag in tags:
        try:
            m = htmap.load(tag)
            out.append((m, _status_row(m, meta)))
        except (exceptions.TagNotFound, exceptions.MapWasRemoved):
            if strict:
                raise no_such_tag(tag) from None  # an explicitly named tag
            continue  # removed while we looked
        except exceptions.MapIsDamaged as e:
            _warn_once(str(e))  # named on stderr; one damaged map never hides the others
    return out


_warned: set = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warn(message)


def _fields(state: bool, meta: bool) -> List[str]:
    return management.record_fields(state, meta)


def _map_color(row: Dict[str, Any]) -> Optional[str]:
    if row.get(ComponentStatus.REMOVED.value):
        return "magenta"
    if row.get(ComponentStatus.HELD.value) or row.get(ComponentStatus.ERRORED.value):
        return "red"
    if row.get(ComponentStatus.COMPLETED.value) == row["components"]:
        return "green"
    if row.get(ComponentStatus.RUNNING.value):
        return "cyan"
    if row.get(ComponentStatus.IDLE.value):
        return "yellow"
    return None


# the text table's columns, by the names --columns takes
TEXT_COLUMNS = {"tag": "Tag", "components": "Components", **{s.lower(): s for s in STATE_COLUMNS},
                "data": "Local Data", "memory": "Max Memory", "max_runtime": "Max Runtime",
                "total_runtime": "Total Runtime"}
TEXT_COLUMNS_BY_HEADER = {h: k for k, h in TEXT_COLUMNS.items()}
# what a table too wide for the terminal gives up first: empty status columns, then runtimes, ...
_DROP_ORDER = [("suspended", True), ("removed", True), ("total_runtime", False), ("max_runtime", False),
               ("held", True), ("errored", True), ("running", True), ("idle", True), ("data", False),
               ("memory", False)]


def parse_columns(text: Optional[str]) -> Optional[List[str]]:
    """``--columns a,b,c`` as column names (the tag always first); None for the automatic choice."""
    if text is None or text.strip().lower() == "auto":
        return None
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in TEXT_COLUMNS]
    if unknown or not names:
        raise click.BadParameter(f"unknown column {', '.join(unknown) or '(none given)'}; choose from "
                                 f"{', '.join(TEXT_COLUMNS)} (comma-separated), or auto", param_hint="--columns")
    return ["tag"] + [n for n in names if n != "tag"]


def fit_columns(table: List[List[str]], width: int) -> List[int]:
    """Indexes of the columns kept so that the aligned table fits ``width`` characters."""
    keys = {TEXT_COLUMNS_BY_HEADER[h]: i for i, h in enumerate(table[0])}
    kept = list(range(len(table[0])))

    def line_width() -> int:
        return sum(max(len(r[i]) for r in table) for i in kept) + 2 * (len(kept) - 1)

    for key, only_if_empty in _DROP_ORDER:
        if line_width() <= width:
            break
        i = keys.get(key)
        if i is None or (only_if_empty and any(r[i] != "0" for r in table[1:])):
            continue
        kept.remove(i)
    return kept


def format_status_text(rows: List[Dict[str, Any]], state: bool, meta: bool, color: bool,
                       width: Optional[int] = None, columns: Optional[List[str]] = None,
                       fit: Optional[int] = None) -> List[str]:
    """The status table's lines: ``columns`` by name, or those that fit ``fit`` characters."""
    table = management.status_cells(rows, state, meta, mark_transient=True)
    if columns is not None:
        headers = [TEXT_COLUMNS[c] for c in columns]
        kept = [table[0].index(h) for h in headers if h in table[0]]
    elif fit:
        kept = fit_columns(table, fit)
    else:
        kept = list(range(len(table[0])))
    table = [[r[i] for i in kept] for r in table]
    lines = aligned_table(table, [False] + [True] * (len(table[0]) - 1))
    if width:  # --live: a wrapped line would break redrawing in place
        lines = [line[:width].rstrip() for line in lines]
    out = [style(lines[0], color, bold=True), lines[1]]
    for r, line in zip(rows, lines[2:]):
        out.append(style(line, color, fg=_map_color(r)))
    if any(r["transient"] for r in rows):
        out.append("(* transient: removed by `htmap clean`)")
    return out


def format_status_json(rows: List[Dict[str, Any]], fields: List[str], compact: bool) -> str:
    data = {r["tag"]: {k: r[k] for k in fields} for r in rows}
    if compact:
        return json.dumps(data, sort_keys=True, separators=(",", ":"))
    return json.dumps(data, sort_keys=True, indent=2)


def format_status_csv(rows: List[Dict[str, Any]], fields: List[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for r in map(management.csv_row, rows):
        writer.writerow([("true" if r[k] else "false") if isinstance(r[k], bool) else r[k] for k in fields])
    return buf.getvalue()


@cli.command()
@tag_selection
@click.option("--format", "fmt", type=click.Choice(["text", "json", "json_compact", "csv"]), default="text",
              show_default=True, help="Output format; json, json_compact and csv are stable (docs/cli.md).")
@click.option("--state/--no-state", default=True, show_default=True, help="Show component counts per status.")
@click.option("--meta/--no-meta", default=True, show_default=True,
              help="Show local data, memory and runtime figures.")
@click.option("--live/--no-live", default=False, help="Redraw the table in place until Ctrl-C (text only).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between redraws with --live.")
@click.option("-n", "--iterations", type=click.IntRange(min=1), default=None,
              help="With --live: stop after this many draws (like top -n).")
@click.option("--columns", default=None, metavar="NAMES",
              help="Comma-separated columns of the text table: " + ", ".join(TEXT_COLUMNS)
                   + ". Default (auto): those that fit the terminal (80 characters when not a terminal).")
@click.option("--color/--no-color", default=None,
              help="Colour the table (default: only on a terminal, and not when NO_COLOR is set).")
def status(tags, patterns, all_, fmt, state, meta, live, interval, iterations, columns, color) -> None:
    """Print the status of maps (every map when none is selected)."""
    chosen_columns = parse_columns(columns)
    if live and fmt != "text":
        raise CLIError(f"--live only works with --format text, not --format {fmt}", EXIT_USAGE)
    from_stdin = not (tags or patterns or all_) and not _stdin_is_tty()
    selected = select_tags(tags, patterns, all_, default_all=True)
    strict = bool(tags) or (from_stdin and bool(selected))  # tags the user named must exist
    follow = all_ or not (tags or patterns or from_stdin)  # with --live, new maps appear
    fields = _fields(state, meta)
    colored = use_color(color)

    def render() -> List[str]:
        nonlocal selected
        if live and follow:
            selected = list(htmap.get_tags())
        elif live and patterns and not tags:
            selected = existing_tags(*patterns)
        pairs = _status_rows(selected, meta, strict=strict and not live)
        pairs.sort(key=lambda p: (p[1]["transient"], p[1]["tag"]))
        terminal = shutil.get_terminal_size((80, 24)).columns
        width = terminal - 1 if live else None
        return format_status_text([r for _, r in pairs], state, meta, colored, width, chosen_columns,
                                  fit=terminal - 1 if live else terminal)

    if fmt != "text":
        rows = [r for _, r in sorted(_status_rows(selected, meta, strict=strict),
                                     key=lambda p: p[1]["tag"])]
        if fmt == "csv":
            legacy = management.fields_0_6(state, meta, nested=False)
            click.echo(format_status_csv(rows, fields + legacy), nl=False)
        else:
            legacy = management.fields_0_6(state, meta)
            click.echo(format_status_json(rows, fields + legacy, compact=fmt == "json_compact"))
        return

    lines = render()
    echo("\n".join(lines), color=colored)
    if not live:
        return
    draws = 1
    try:
        while iterations is None or draws < iterations:
            time.sleep(interval)
            new = render()
            # move to the start of the previous table, rewrite each line, clear what is left below
            out = f"\033[{len(lines)}F" + "".join(f"{line}\033[K\n" for line in new) + "\033[J"
            click.echo(out, nl=False, color=True)
            lines = new
            draws += 1
    except KeyboardInterrupt:
        return


# -- waiting -------------------------------------------------------------------------

def failure_lines(m: "htmap.Map") -> List[str]:
    """One line per errored, held or removed component."""
    by_status = m.components_by_status()
    out = []
    errored = by_status.get(ComponentStatus.ERRORED, ())
    if errored:
        reports = m.errors_so_far
        for c in errored:
            e = reports.get(c)
            if e is None:
                what = "errored (no error report was found)"
            elif e.kind == "exception":
                what = f"errored: {e.exception_type}: {_one_line(e.exception_msg)}"
            else:
                what = f"failed: {_one_line(e.exception_msg)}"
            out.append(f"map {m.tag} component {c} {what}")
    holds = m.holds
    for c in by_status.get(ComponentStatus.HELD, ()):
        h = holds.get(c)
        reason = _one_line(h.reason) if h is not None and h.reason else "no reason given"
        code = f" (code {h.code})" if h is not None and h.code is not None else ""
        out.append(f"map {m.tag} component {c} is held: {reason}{code}")
    for c in by_status.get(ComponentStatus.REMOVED, ()):
        out.append(f"map {m.tag} component {c} was removed")
    return out


@cli.command()
@tag_selection
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Give up after this many seconds (exit status 124).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar per map on stderr (default: when stderr is a terminal).")
def wait(tags, patterns, all_, timeout, progress) -> None:
    """Wait until every component of the maps has finished.

    Held components count as stopped (they need you: see `htmap reasons`). Exits 0 when
    every component completed; otherwise prints one line per errored, held or removed
    component on stderr and exits 1.
    """
    maps = load_all(select_tags(tags, patterns, all_))
    if progress is None:
        progress = _stderr_is_tty()
    deadline = None if timeout is None else time.monotonic() + timeout
    failed = []
    for m in maps:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        m.wait(timeout=remaining, show_progress_bar=progress, holds_ok=True, errors_ok=True)
        lines = failure_lines(m)
        if lines:
            failed.extend(lines)
        else:
            click.echo(f"{m.tag}: all {len(m)} components completed")
    if failed:
        for line in failed:
            click.echo(f"ERROR: {line}", err=True)
        raise click.exceptions.Exit(EXIT_ERROR)


# -- acting on maps ------------------------------------------------------------------

@cli.command()
@tag_selection
@click.option("--force", is_flag=True, default=False,
              help="Delete the map's files even if its engine cannot be told to stop its components.")
def remove(tags, patterns, all_, force) -> None:
    """Stop the maps' components and delete the maps."""
    selected = select_tags(tags, patterns, all_, keep_damaged=force)
    damaged = []
    for tag in selected:  # a damaged map is deleted only with --force (its engine cannot be told to stop it)
        try:
            htmap.load(tag)
        except exceptions.MapIsDamaged:
            if not force:
                raise
            damaged.append(tag)
        except exceptions.TagNotFound:
            pass
    for m in load_all(t for t in selected if t not in damaged):
        tag = m.tag
        m.remove(force=force)
        click.echo(f"Removed map {tag}")
    for tag in damaged:
        htmap.remove(tag, force=True)
        click.echo(f"Removed damaged map {tag}")


@cli.command()
@click.option("--all", "all_", is_flag=True, default=False, help="Remove every map, not only transient ones.")
@click.option("--force", is_flag=True, default=False,
              help="Delete files even if an engine cannot be told to stop components.")
def clean(all_, force) -> None:
    """Remove transient maps (maps made without a tag); every map with --all."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        removed = htmap.clean(all=all_, force=force)
    for w in caught:  # damaged maps kept without --force
        warn(str(w.message))
    for tag in removed:
        click.echo(f"Removed map {tag}")
    if not removed:
        click.echo("No maps to clean" if all_ else "No transient maps to clean")


def _control_command(name: str, past: str, doc: str):
    @tag_selection
    @click.option("-c", "--component", "components", type=click.IntRange(min=0), multiple=True, metavar="N",
                  help="Only this component (repeatable); default: every component.")
    def command(tags, patterns, all_, components):
        for m in load_all(select_tags(tags, patterns, all_)):
            getattr(m, name)(list(components) if components else None)
            which = f"components {', '.join(map(str, components))} of map" if components else "map"
            click.echo(f"{past} {which} {m.tag}")

    command.__doc__ = doc
    command.__name__ = name
    return cli.command(name=name)(command)


_control_command("hold", "Held", "Hold the maps' components: stop them, and keep them until released.")
_control_command("release", "Released", "Release held components so they run again.")
_control_command("pause", "Paused", "Pause (suspend) running components.")
_control_command("resume", "Resumed", "Resume paused components.")
_control_command("vacate", "Vacated", "Stop running components; they go back to waiting and run again.")


# -- reports -------------------------------------------------------------------------

STATUS_NAMES = [s.value for s in ComponentStatus]


def parse_statuses(names: Sequence[str]) -> List[ComponentStatus]:
    """Status names in any case; a wrong one is a usage error naming the valid ones."""
    out = []
    for name in names:
        try:
            out.append(ComponentStatus(name.upper()))
        except ValueError:
            raise CLIError(f"{name} is not a component status; choose one of {', '.join(STATUS_NAMES)}",
                           EXIT_USAGE) from None
    return out


def format_records(records: List[Dict[str, Any]], fields: List[str], fmt: str) -> str:
    """``json`` (a list of objects) or ``csv`` (a header row, then one row per record)."""
    if fmt == "json":
        return json.dumps(records, indent=2)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for r in records:
        writer.writerow(["" if r.get(k) is None else r[k] for k in fields])
    return buf.getvalue().rstrip("\n")


def record_format_option(what: str) -> Callable:
    return click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text",
                        show_default=True, help=f"Output format; json and csv give {what} (docs/cli.md).")



@cli.command()
@tag_selection
@record_format_option("one record per held component: tag, component, code, reason")
@click.option("--color/--no-color", default=None, help="Bold headings (default: on a terminal without NO_COLOR).")
def reasons(tags, patterns, all_, fmt, color) -> None:
    """Print why the maps' held components are held."""
    maps = load_all(select_tags(tags, patterns, all_))
    if fmt != "text":
        records = [{"tag": m.tag, "component": c, "code": h.code, "reason": h.reason}
                   for m in maps for c, h in m.holds.items()]
        click.echo(format_records(records, ["tag", "component", "code", "reason"], fmt))
        return
    colored = use_color(color)
    blocks = []
    for m in maps:
        holds = m.holds
        if not holds:
            continue
        title = style(f"Map {m.tag} ({len(holds)} hold{'s' if len(holds) != 1 else ''})", colored, bold=True)
        blocks.append(f"{title}\n{m.hold_report()}")
    if blocks:
        echo("\n\n".join(blocks), color=colored)


ERROR_FIELDS = ["tag", "component", "kind", "exception_type", "exception_msg"]


def error_records(maps: Sequence["htmap.Map"], limit: int) -> List[Tuple[Dict[str, Any], str]]:
    """(record, full report) of each errored component, at most ``limit`` (0: all)."""
    out = []
    for m in maps:
        for c, e in sorted(m.errors_so_far.items()):
            record = {"tag": m.tag, "component": c, "kind": e.kind, "exception_type": e.exception_type,
                      "exception_msg": e.exception_msg}
            out.append((record, e.report()))
            if 0 < limit <= len(out):
                return out
    return out


@cli.command()
@tag_selection
@click.option("--limit", type=click.IntRange(min=0), default=0, show_default=True,
              help="Show at most this many error reports (0: all).")
@record_format_option("one record per errored component: " + ", ".join(ERROR_FIELDS) + " (json adds report)")
def errors(tags, patterns, all_, limit, fmt) -> None:
    """Print the error reports of the maps' errored components."""
    found = error_records(load_all(select_tags(tags, patterns, all_)), limit)
    if fmt == "json":
        click.echo(format_records([dict(r, report=report) for r, report in found], ERROR_FIELDS, fmt))
    elif fmt == "csv":
        click.echo(format_records([r for r, _ in found], ERROR_FIELDS, fmt))
    elif found:
        click.echo("\n\n".join(report.rstrip("\n") for _, report in found))


def _stream_command(stream: str):
    @click.argument("tag", shell_complete=complete_tags)
    @click.argument("component", type=click.IntRange(min=0))
    @click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                  help="Wait at most this many seconds for the component to finish (default: wait as long as "
                       "it takes; exit status 124 when the time runs out).")
    @click.option("-f", "--follow", is_flag=True, default=False,
                  help=f"Print the {stream} as the component writes it, until it finishes (like tail -f).")
    def command(tag, component, timeout, follow):
        m = load_map(tag)
        if follow:
            for chunk in getattr(m, stream).follow(component, timeout=timeout):
                click.echo(chunk, nl=False)
            return
        text = getattr(m, stream).get(component, timeout=timeout)
        click.echo(text, nl=bool(text) and not text.endswith("\n"))

    command.__doc__ = f"Print the {stream} of one component of a map, waiting for it to finish."
    command.__name__ = stream
    return cli.command(name=stream)(command)


_stream_command("stdout")
_stream_command("stderr")


COMPONENT_FIELDS = ["tag", "component", "status"]


@cli.command()
@click.argument("tag", shell_complete=complete_tags)
@click.option("--status", "statuses", multiple=True, metavar=f"[{'|'.join(STATUS_NAMES)}]",
              help="Print only the numbers of components with this status, on one line separated by "
                   "spaces (any case; repeatable).")
@record_format_option("one record per component: " + ", ".join(COMPONENT_FIELDS))
@click.option("--color/--no-color", default=None, help="Colour statuses (default: on a terminal without NO_COLOR).")
def components(tag, statuses, fmt, color) -> None:
    """Print the status of each component of a map: one `N STATUS` pair per line."""
    wanted = set(parse_statuses(statuses))
    m = load_map(tag)
    pairs = [(c, s) for c, s in enumerate(m.component_statuses) if not wanted or s in wanted]
    if fmt != "text":
        records = [{"tag": m.tag, "component": c, "status": s.value} for c, s in pairs]
        click.echo(format_records(records, COMPONENT_FIELDS, fmt))
        return
    if wanted:
        if pairs:
            click.echo(" ".join(str(c) for c, _ in pairs))
        return
    colored = use_color(color)
    width = len(str(len(m) - 1))
    lines = [f"{str(c).rjust(width)} {style(s.value, colored, fg=STATUS_COLORS.get(s))}" for c, s in pairs]
    echo("\n".join(lines), color=colored)


@cli.command()
@click.argument("tag", shell_complete=complete_tags)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Image file to write (its extension picks the format); default: TAG.png.")
def plot(tag, output) -> None:
    """Draw each component's time idle and running, and a histogram of run times."""
    m = load_map(tag)
    path = output or f"{tag}.png"
    m.plot(path)
    click.echo(path)


# -- changing maps -------------------------------------------------------------------

@cli.group()
def rerun() -> None:
    """Run finished components (or whole maps) again."""


@rerun.command(name="map")
@tag_selection
def rerun_map(tags, patterns, all_) -> None:
    """Rerun every component of the maps."""
    maps = load_all(select_tags(tags, patterns, all_))
    for m in maps:
        m.rerun()
        click.echo(f"Rerunning map {m.tag}")


@rerun.command(name="components")
@click.argument("tag", shell_complete=complete_tags)
@click.argument("components", nargs=-1, required=True, type=click.IntRange(min=0))
def rerun_components(tag, components) -> None:
    """Rerun some components of a map: htmap rerun components TAG 0 3 7."""
    m = load_map(tag)
    chosen = sorted(set(components))
    m.rerun(chosen)
    click.echo(f"Rerunning component{'s' if len(chosen) > 1 else ''} {', '.join(map(str, chosen))} of map {m.tag}")


@cli.command()
@click.argument("tag", shell_complete=complete_tags)
@click.argument("new")
def retag(tag, new) -> None:
    """Give a map a new tag (a retagged map is no longer transient)."""
    m = load_map(tag)
    m.retag(new)
    click.echo(f"Retagged map {tag} to {new}")


@cli.group()
def edit() -> None:
    """Change the resources requested by a map's unfinished components."""


@edit.command()
@click.argument("tag", shell_complete=complete_tags)
@click.argument("memory", type=click.IntRange(min=1))
@click.option("--unit", type=click.Choice(["MB", "GB"], case_sensitive=False), default="MB", show_default=True)
def memory(tag, memory, unit) -> None:
    """Set the memory request of a map."""
    m = load_map(tag)
    m.set_memory(f"{memory}{unit.upper()}")
    click.echo(f"Set the memory request of map {m.tag} to {memory} {unit.upper()}")


@edit.command()
@click.argument("tag", shell_complete=complete_tags)
@click.argument("disk", type=click.IntRange(min=1))
@click.option("--unit", type=click.Choice(["KB", "MB", "GB"], case_sensitive=False), default="GB", show_default=True)
def disk(tag, disk, unit) -> None:
    """Set the disk request of a map."""
    m = load_map(tag)
    m.set_disk(f"{disk}{unit.upper()}")
    click.echo(f"Set the disk request of map {m.tag} to {disk} {unit.upper()}")


# -- where things are ----------------------------------------------------------------

PATH_TARGETS = ("map", "tag", "events", "logs", "inputs", "outputs", "output_files")


def _complete_path(ctx, param, incomplete: str) -> List[str]:
    tag, sep, _ = incomplete.rpartition(":")
    if sep and tag in complete_tags(ctx, param, tag):
        return [f"{tag}:{t}" for t in PATH_TARGETS if f"{tag}:{t}".startswith(incomplete)]
    return complete_tags(ctx, param, incomplete)


def _events_path(m: "htmap.Map") -> Path:
    engine_dir = m._dir / "engine"
    for name in ("events", "events.log", "job.log"):
        if (engine_dir / name).exists():
            return engine_dir / name
    return engine_dir


@cli.command()
@click.argument("target", metavar="TAG[:map|tag|events|logs|inputs|outputs|output_files]",
                shell_complete=_complete_path)
def path(target) -> None:
    """Print the path of a map's directory, or of one of its parts (for debugging).

    \b
    htmap path foo          the map's directory
    htmap path foo:map      the same
    htmap path foo:tag      the tag file pointing at it
    htmap path foo:events   the engine's event log of the map
    htmap path foo:logs     the directory of component stdout and stderr
    htmap path foo:inputs   the directory of component inputs
    htmap path foo:outputs  the directory of component outputs
    htmap path foo:output_files  the directory of components' output files
    """
    tag, sep, part = target.rpartition(":")
    if not sep or mapstore.uid_for_tag(target) is not None:
        tag, part = target, "map"  # tags may contain ':'
    elif part not in PATH_TARGETS:
        if mapstore.uid_for_tag(tag) is not None:
            raise click.BadParameter(f"unknown part {part!r}; choose one of {', '.join(PATH_TARGETS)}",
                                     param_hint="TAG[:PART]")
        tag, part = target, "map"
    m = load_map(tag)
    paths = {
        "map": m._dir,
        "tag": mapstore.tag_path(m.tag),
        "events": _events_path(m),
        "logs": m._dir / "logs",
        "inputs": m._dir / "inputs",
        "outputs": m._dir / "outputs",
        "output_files": m._dir / "output_files",
    }
    click.echo(str(paths[part]))


def _log_files() -> List[Path]:
    root = settings_module.htmap_dir()
    return [root / "local" / "supervisor.log"]


@cli.command()
@click.option("--view/--no-view", default=False, help="Print the log instead of its path.")
def logs(view) -> None:
    """Print the path of htmap's log file (the local engine's supervisor log)."""
    files = _log_files()
    if not view:
        for f in files:
            click.echo(str(f))
        return
    existing = [f for f in files if f.exists()]
    if not existing:
        raise CLIError(f"no log yet: {', '.join(map(str, files))} does not exist (nothing has run here)")
    text = "".join(f.read_text(errors="replace") for f in existing)
    if _stdout_is_tty():
        click.echo_via_pager(text)
    else:
        click.echo(text, nl=False)


# -- settings ------------------------------------------------------------------------

@cli.command(name="settings")
@click.option("--user", is_flag=True, default=False, help="Print only your settings file (~/.htmaprc).")
def settings_command(user) -> None:
    """Print htmap's settings (as TOML)."""
    if not user:
        click.echo(settings_module.to_toml(htmap.settings.to_dict()), nl=False)
        return
    rc = settings_module.rc_path()
    try:
        text = rc.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CLIError(f"you have no settings file ({rc} does not exist); create one with `htmap set KEY VALUE`")
    click.echo(text, nl=not text.endswith("\n"))


def _default_for(key: str) -> Any:
    d: Any = settings_module.BASE_SETTINGS
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return _UNKNOWN
        d = d[part]
    return d


_UNKNOWN = object()


def typed_value(key: str, text: str, as_string: bool) -> Any:
    """The value ``htmap set`` stores: typed like the setting's default, else bool/int/float/str."""
    if as_string:
        return text
    default = _default_for(key)
    value = settings_module.parse_scalar(text)
    if default is _UNKNOWN:
        return value
    if isinstance(default, dict):
        raise CLIError(f"{key} is a table of settings, not one setting; set one of: "
                       f"{', '.join(f'{key}.{k}' for k in default) or '(its keys)'}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise CLIError(f"{key} takes true or false, not {text!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CLIError(f"{key} takes a number, not {text!r}")
        return value
    return text  # a string setting stays a string, even "3" or "true"


@cli.command(name="set")
@click.argument("key")
@click.argument("value")
@click.option("--string", "as_string", is_flag=True, default=False,
              help="Store VALUE as a string even if it looks like a number or boolean.")
def set_(key, value, as_string) -> None:
    """Store a setting in your settings file (~/.htmaprc).

    Numbers and true/false are stored as such; settings that are strings (like
    DOCKER.IMAGE) stay strings. Dotted keys name tables: htmap set LOCAL.MAX_WORKERS 4.
    """
    if not key or any(not part for part in key.split(".")):
        raise click.BadParameter(f"{key!r} is not a setting name", param_hint="KEY")
    typed = typed_value(key, value, as_string)
    if _default_for(key) is _UNKNOWN and not key.startswith("MAP_OPTIONS."):
        warn(f"{key} is not a setting htmap knows; storing it anyway")
    rc = settings_module.rc_path()
    user = settings_module.Settings.load(rc) if rc.exists() else settings_module.Settings({})
    user[key] = typed
    user.save(rc)
    click.echo(f"Set {key} = {json.dumps(typed)} in {rc}")


# -- transplant installs ---------------------------------------------------------------

@cli.group()
def transplants() -> None:
    """Manage the packed Python installations of the transplant delivery method."""


@transplants.command(name="info")
def transplants_info() -> None:
    """List the packed installations, numbered, with their packages."""
    click.echo(htmap.transplant_info())


@transplants.command(name="remove")
@click.argument("index", type=int)
def transplants_remove(index) -> None:
    """Remove a packed installation by its number in `htmap transplants info`."""
    installs = htmap.transplants()
    if not 0 <= index < len(installs):
        raise CLIError(f"there is no transplant install number {index}; "
                       + (f"they are numbered 0 to {len(installs) - 1} (see `htmap transplants info`)"
                          if installs else htmap.transplant_info()))
    installs[index].remove()
    click.echo(f"Removed transplant install {installs[index].hash} ({installs[index].path})")


COMPLETION_LINES = {
    "bash": ('eval "$(_HTMAP_COMPLETE=bash_source htmap)"', "~/.bashrc"),
    "zsh": ('eval "$(_HTMAP_COMPLETE=zsh_source htmap)"', "~/.zshrc"),
    "fish": ("_HTMAP_COMPLETE=fish_source htmap | source", "~/.config/fish/completions/htmap.fish"),
}


@cli.command()
@click.option("--shell", required=True, type=click.Choice(sorted(COMPLETION_LINES), case_sensitive=False),
              help="The shell to complete htmap commands, options and tags in.")
@click.option("--force", is_flag=True, default=False, help="Add the line even if the file already has it.")
@click.option("--destination", type=click.Path(dir_okay=False, writable=True), default=None,
              help="The file to add the line to (default: the shell's start-up file).")
def autocompletion(shell, force, destination) -> None:
    """Turn on shell completion: add click's completion line to the shell's start-up file (once)."""
    line, default = COMPLETION_LINES[shell.lower()]
    path = Path(os.path.expanduser(destination or default))
    text = path.read_text() if path.exists() else ""
    if line in text and not force:
        click.echo(f"Completion for {shell} is already on in {path}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(f"{'' if not text or text.endswith(chr(10)) else chr(10)}# htmap completion\n{line}\n")
    click.echo(f"Added htmap completion for {shell} to {path}; it works in new shells")


@cli.command()
def version() -> None:
    """Print the versions of htmap, Python and its libraries (the first line as HTMap 0.6 printed it)."""
    click.echo(htmap.version())
    click.echo(f"Python {platform.python_version()} ({sys.executable})")
    for dist in ("cloudpickle", "click", "tqdm", "htcondor", "matplotlib"):
        v = _dist_version(dist)
        if v:
            click.echo(f"{dist} {v}")


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version
    except ImportError:  # pragma: no cover
        return None
    try:
        return dist_version(name)
    except PackageNotFoundError:
        return None


def _tool_version(argv: List[str]) -> Tuple[Optional[str], str]:
    """(first line of ``argv``'s output, or None) and why."""
    exe = shutil.which(argv[0])
    if exe is None:
        return None, f"{argv[0]} is not on PATH"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{exe} did not answer ({e})"
    text = (proc.stdout or proc.stderr).strip()
    first = text.splitlines()[0].strip("$ ") if text else ""
    return (first or None), exe


def gather_info() -> Dict[str, Any]:
    from . import engines

    setting = str(htmap.settings.get("ENGINE", "auto"))
    try:
        chosen, why = engines.resolve_name(setting)
    except exceptions.HTMapException as e:
        chosen, why = None, str(e)
    probes = [{"engine": name, "available": ok, "why": reason} for name, ok, reason in engines.probe()]
    root = settings_module.htmap_dir()
    rc = settings_module.rc_path()
    condor, condor_where = _tool_version(["condor_version"])
    slurm, slurm_where = _tool_version(["sbatch", "--version"])
    return {
        "htmap_version": htmap.__version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "engine_setting": setting,
        "engine": chosen,
        "engine_reason": why,
        "htmap_dir": str(root),
        "htmap_dir_exists": root.exists(),
        "maps": len(existing_tags()),
        "settings_file": str(rc),
        "settings_file_exists": rc.exists(),
        "engines": probes,
        "clusters": {
            "htcondor": {"found": condor is not None, "version": condor, "where": condor_where,
                         "bindings": _dist_version("htcondor")},
            "slurm": {"found": slurm is not None, "version": slurm, "where": slurm_where},
        },
    }


def _strip_prefix(text: str, prefix: str) -> str:
    return text[len(prefix):] if text.startswith(prefix) else text


@cli.command()
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the information as JSON.")
def info(as_json) -> None:
    """Which engine htmap would use here and why; where maps and settings live; clusters found."""
    data = gather_info()
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    engine = data["engine"] or "none"
    lines = [
        ("htmap", f"{data['htmap_version']}, Python {data['python']}"),
        ("Engine", f"{engine} (ENGINE = {data['engine_setting']}; {_strip_prefix(data['engine_reason'], 'auto: ')})"),
        ("HTMAP_DIR", f"{data['htmap_dir']} ({data['maps']} map{'s' if data['maps'] != 1 else ''}"
                      f"{'' if data['htmap_dir_exists'] else ', does not exist yet'})"),
        ("Settings file", f"{data['settings_file']}{'' if data['settings_file_exists'] else ' (none)'}"),
    ]
    width = max(len(k) for k, _ in lines) + 1
    for k, v in lines:
        click.echo(f"{(k + ':').ljust(width)} {v}")
    click.echo("Engines (auto tries them in this order):")
    rows = [[p["engine"], "yes" if p["available"] else "no", p["why"]] for p in data["engines"]]
    for line in aligned_table(rows, [False, False, False], header=False):
        click.echo(f"  {line}")
    click.echo("Clusters:")
    c = data["clusters"]["htcondor"]
    bindings = f"; htcondor bindings {c['bindings']}" if c["bindings"] else "; htcondor bindings not installed"
    click.echo(f"  HTCondor: {c['version'] + ' (' + c['where'] + ')' if c['found'] else c['where']}{bindings}")
    s = data["clusters"]["slurm"]
    click.echo(f"  Slurm:    {s['version'] + ' (' + s['where'] + ')' if s['found'] else s['where']}")


if __name__ == "__main__":  # pragma: no cover
    main()
