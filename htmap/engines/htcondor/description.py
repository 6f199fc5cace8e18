"""The submit description and item data of one cluster, from a ``JobSet``. Pure: no bindings.

One cluster per submission (the whole map, or the components of a rerun); ``$(component)``
comes from the item data, one item per component, so ProcId N is the Nth item.
Everything per component (options given as lists, input files, output remaps) travels in
the item data; everything else is a plain descriptor.

Policies htmap adds (HoldReasonCode 3 "JobPolicy", with these HoldReasonSubCodes):

* ``HOLD_RUNNER_EXIT`` / ``HOLD_RUNNER_SIGNAL``: the runner (not the user's function) failed;
  ``on_exit_hold`` holds the job with the exit status or signal as reason;
* ``HOLD_MEMORY``: ``request_memory`` given and ``MemoryUsage`` went above it (like the
  local engine, which enforces the request);
* ``HOLD_RUNTIME``: ``max_runtime`` given and the job ran longer.

Retries (``max_retries`` N): ``periodic_release`` releases jobs held for memory, runtime,
a signal, or HTCondor's own out-of-memory hold (code 34), while ``NumJobStarts <= N``;
with ``retry_memory_factor`` F, ``request_memory`` becomes an expression that asks for
``max(request, MemoryUsage * F)`` after a memory hold (2 GB -> ~4 GB -> ~8 GB).
``retry_exceptions`` (exception class names): the wrapper exits with ``RETRY_EXIT_CODE``
when the component raised one of them, and ``on_exit_remove`` sends the job back to the
queue while ``NumJobStarts <= N``; after that the error report stands (ERRORED).
Every attempt shows in the event log (EVICTED / HELD / RELEASED), hence in the history.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ... import exceptions
from ...options import and_requirements
from ..base import JobSet
from . import deferred, sites
from .delivery import RETRY_EXIT_CODE, WRAPPER_NAME

LATE_MATERIALIZATION_THRESHOLD = 10_000  # components in one cluster above which jobs materialize late
DEFAULT_MAX_IDLE = 2_000  # idle jobs kept materialized when htmap turns late materialization on

HOLD_RUNNER_EXIT = 1
HOLD_MEMORY = 2
HOLD_RUNTIME = 3
HOLD_RUNNER_SIGNAL = 4
HOLD_DEFERRED = 5  # held (by htmap hold) before it was a job: see ``deferred``
HOLD_DEFERRED_REMOVE = 6  # removed before it was a job: the schedd removes it at once
HOLD_DEFERRED_EDIT = 7  # edited before it was a job: the engine edits and releases it
HTCONDOR_OUT_OF_MEMORY = 34  # HoldReasonCode of the startd's own memory enforcement

EVENT_LOG = "events"
INPUTS_DIR = "inputs"
RESOURCE_KEYS = ("request_memory", "request_disk", "request_cpus")
CONSUMED_KEYS = frozenset(("max_runtime", "max_retries", "retry_memory_factor", "retry_exceptions"))
SOURCE_NAME = "func.source.json"
RESERVED_INPUT_NAMES = frozenset(("runner.py", "execution.py", "func", SOURCE_NAME, WRAPPER_NAME))
_MACRO_SAFE = re.compile(r"[^A-Za-z0-9_]")


def is_late(desc: Dict[str, str]) -> bool:
    """Whether a description materializes its jobs late (the schedd makes jobs as slots free up)."""
    return any(k.lower() in ("max_idle", "max_materialize") for k in desc)


def classad_string(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def classad_value(key: str, value: Any) -> str:
    """A custom option as the ClassAd expression it is, as HTMap 0.6 read it: the text after
    ``=`` in a submit file (``"true"`` a boolean, ``"42"`` an integer, ``'"espresso"'`` a
    string). Python bool, int and float values become literals. Refuses what does not parse."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).strip()
    check_expression(key, text)
    return text


_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLASSAD_LITERALS = frozenset(("true", "false", "undefined", "error"))


def check_expression(key: str, text: str) -> None:
    """Raise ``InvalidOption`` naming ``key`` and the quoting to use unless ``text`` is a ClassAd
    expression (checked with ``classad2`` where it is installed); warn about a bare word, which is
    a reference to another attribute, not a string."""
    quoted = f"""'"{text}"'""" if '"' not in text else repr(text)
    fix = (f"the value is the text after '=' in a submit file: for the string {text!r} write "
           f"custom_options={{{key!r}: {quoted}}}; booleans and numbers plainly ('true', '42')")
    if "\n" in text or not text:
        raise exceptions.InvalidOption(f"custom_options[{key!r}] = {text!r} is not a ClassAd expression; {fix}")
    try:
        import classad2
    except ImportError:
        return  # the htcondor engine cannot submit without the bindings anyway
    try:
        classad2.ExprTree(text)
    except Exception as e:
        raise exceptions.InvalidOption(
            f"custom_options[{key!r}] = {text!r} is not a ClassAd expression ({e}); {fix}") from None
    if _BARE_WORD.fullmatch(text) and text.lower() not in _CLASSAD_LITERALS:
        warnings.warn(f"custom_options[{key!r}] = {text!r} refers to the job attribute {text!r}; it is not "
                      f"the string {text!r}. If you meant the string, {fix}", UserWarning, stacklevel=2)


def descriptor_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if "\n" in text:
        raise exceptions.InvalidOption(f"submit descriptor values cannot contain newlines: {value!r}")
    return text


def _item_key(prefix: str, name: str) -> str:
    return f"htmap_{prefix}_{_MACRO_SAFE.sub('_', name)}"


def local_or_url(path: str) -> str:
    """Input files: URLs pass through; ``file://`` and plain paths become absolute paths (a trailing / kept)."""
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return text
    trailing = text.endswith("/") and len(text) > 1
    absolute = str(Path(text).expanduser().absolute())
    if "," in absolute:
        raise exceptions.InvalidOption(f"HTCondor cannot transfer a file whose path contains a comma: {absolute}")
    return absolute + "/" if trailing and not absolute.endswith("/") else absolute


def remap_destination(dest: str) -> str:
    text = local_or_url(dest)
    if ";" in text or "=" in text.split("://", 1)[-1]:
        raise exceptions.InvalidOption(f"an output remap destination cannot contain ';' or '=': {dest!r}")
    return text


def flat_name(name: str) -> str:
    """An output_remaps key (a path under the transfer directory) as the top-level name the job leaves it at."""
    parts = [p for p in str(name).split("/") if p not in ("", ".")]
    if not parts or ".." in parts or any(ch in str(name) for ch in ",;='\n\\"):
        raise exceptions.InvalidOption(
            f"output_remaps key {name!r} must be a file name or a relative path without .. , ; = ' or backslash")
    return "__".join(parts)


def _and_exprs(*exprs: str) -> str:
    parts = [e for e in exprs if e]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    return " && ".join(f"({e})" for e in parts)


class Description:
    """Builds the description and item data of a job set (``build``)."""

    def __init__(self, job: JobSet, *, runner: Path, delivery_descriptors: Dict[str, str],
                 delivery_inputs: Sequence[str], delivery_requirements: str = "",
                 custom_descriptors: Optional[Dict[str, Any]] = None):
        self.job = job
        self.runner = runner
        self.delivery_descriptors = dict(delivery_descriptors)
        self.delivery_inputs = list(delivery_inputs)
        self.delivery_requirements = delivery_requirements
        self.custom_descriptors = dict(custom_descriptors or {})
        self.settings = job.settings or {}
        self.preset = sites.site_preset(self.settings.get("SITE", ""))

    # -- helpers -------------------------------------------------------------------
    def _has(self, key: str) -> bool:
        return key in self.job.fixed or key in self.job.per_component

    def credentials(self) -> str:
        value = (self.settings.get("HTCONDOR") or {}).get("CREDENTIALS", "") or self.job.fixed.get("credentials", "")
        return str(value or self.preset.get("credentials", "")).lower()

    def build(self, components: Sequence[int], chunks: Optional[Dict[int, Tuple[str, int]]] = None
              ) -> Tuple[Dict[str, str], List[Dict[str, str]]]:
        """``chunks``: component -> (chunk name, its first component) when inputs travel in chunks."""
        job = self.job
        d = job.directory.absolute()
        engine = d / "engine"
        desc: Dict[str, str] = {
            "universe": "vanilla",
            "executable": str(engine / WRAPPER_NAME),
            "transfer_executable": "true",
            "arguments": "$(component)",
            "JobBatchName": job.name,
            "log": str(engine / EVENT_LOG),
            "submit_event_notes": "$(component)",
            "submit_event_notes_attrs": "component",
            "output": str(d / "logs" / "$(component).stdout"),
            "error": str(d / "logs" / "$(component).stderr"),
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT_OR_EVICT",
            "initialdir": str(d / "output_files"),
            "MY.component": "$(component)",
            "MY.IsHTMapJob": "true",
            "MY.HTMapJobId": classad_string(job.job_id),
        }
        desc.update(self.delivery_descriptors)  # universe, docker_image, container_image
        items: List[Dict[str, str]] = [{"component": str(c)} for c in components]

        def per_item(key: str, values: Iterable[Any]) -> None:
            for item, value in zip(items, values):
                item[key] = descriptor_value(value)

        def option_values(name: str) -> List[Any]:
            return [job.option(name, c) for c in components]

        # -- files -----------------------------------------------------------------
        if chunks:
            chunk_path = engine / INPUTS_DIR / "$(htmap_chunk)"
            own_input = f"{chunk_path}.data,{chunk_path}.index"
            per_item("htmap_chunk", (chunks[c][0] for c in components))
        else:
            own_input = str(engine / INPUTS_DIR / "$(component).in")
        base_inputs = [str(self.runner), str(self.runner.with_name("execution.py")), str(d / "func"), own_input]
        base_inputs += self.delivery_inputs
        htmap_files = len(base_inputs)
        if (d / SOURCE_NAME).exists():  # source lines for error reports of script functions
            base_inputs.append(str(d / SOURCE_NAME))
            htmap_files += 1
        base_inputs += [local_or_url(p) for p in job.fixed_input_files]
        if job.input_files is not None:
            own = [[local_or_url(p) for p in job.input_files[c]] for c in components]
            if any(own):
                desc["transfer_input_files"] = ",".join(base_inputs) + "$(htmap_more_inputs)"
                per_item("htmap_more_inputs", ("".join("," + f for f in files) for files in own))
            else:
                desc["transfer_input_files"] = ",".join(base_inputs)
        else:
            desc["transfer_input_files"] = ",".join(base_inputs)

        self._check_input_names(base_inputs[htmap_files:] + [f for files in (job.input_files or []) for f in files])

        outputs = ["$(component).out", "_htmap_user_transfer/$(component)", "_htmap_checkpoint"]
        remap_base = f"$(component).out={d / 'outputs' / '$(component).out'}"
        remaps = [job.output_remaps[c] if job.output_remaps is not None else {} for c in components]
        if any(remaps):
            for item, remap in zip(items, remaps):
                flat = {name: flat_name(name) for name in remap}
                if len(set(flat.values())) != len(flat):
                    raise exceptions.InvalidOption(f"output_remaps keys {sorted(remap)} collide once '/' becomes '__'")
                item["htmap_more_outputs"] = "".join("," + flat[name] for name in remap)
                item["htmap_more_remaps"] = "".join(f";{flat[name]}={remap_destination(dest)}"
                                                    for name, dest in remap.items())
            desc["transfer_output_files"] = ",".join(outputs) + "$(htmap_more_outputs)"
            desc["transfer_output_remaps"] = f'"{remap_base}$(htmap_more_remaps)"'
        else:
            desc["transfer_output_files"] = ",".join(outputs)
            desc["transfer_output_remaps"] = f'"{remap_base}"'
        if any(remaps) or chunks:
            for c, item, remap in zip(components, items, remaps):
                words = ["-c", chunks[c][0], str(chunks[c][1])] if chunks else []
                item["htmap_arguments"] = " ".join(words + [item["component"]] + [f"'{name}'" for name in remap])
            desc["arguments"] = '"$(htmap_arguments)"'

        # -- resources and pass-through options --------------------------------------
        for key in sorted(set(job.fixed) | set(job.per_component)):
            if key in CONSUMED_KEYS or key == "requirements" or key == "credentials":
                continue
            if key in job.per_component:
                item_key = _item_key("opt", key)
                per_item(item_key, option_values(key))
                desc[key] = f"$({item_key})"
            else:
                desc[key] = descriptor_value(job.fixed[key])

        # -- custom (MY.) attributes -------------------------------------------------
        for key, value in sorted(job.custom.items()):
            if isinstance(value, (list, tuple)):
                item_key = _item_key("my", key)
                per_item(item_key, (classad_value(key, v) for v in (value[c] for c in components)))
                desc[f"MY.{key}"] = f"$({item_key})"
            else:
                desc[f"MY.{key}"] = classad_value(key, value)

        # -- site preset -------------------------------------------------------------
        if self.preset:
            for key, value in self.preset.get("descriptors", {}).items():
                desc.setdefault(key, descriptor_value(value))
            attr = self.preset.get("flavour_attribute")
            given = {k.lower() for k in job.custom} | {k.lower() for k in desc}
            if attr and attr.lower() not in given and f"my.{attr.lower()}" not in given and self._has("max_runtime"):
                flavours = [sites.flavour_for(self.preset, int(v)) for v in option_values("max_runtime")]
                if "max_runtime" in job.per_component:
                    per_item("htmap_flavour", (classad_string(f) for f in flavours))
                    desc[f"MY.{attr}"] = "$(htmap_flavour)"
                else:
                    desc[f"MY.{attr}"] = classad_string(flavours[0])
        if self.credentials() == "kerberos":
            desc["MY.SendCredential"] = "true"

        # -- requirements: delivery AND settings AND options ---------------------------
        settings_req = str((self.settings.get("HTCONDOR") or {}).get("REQUIREMENTS", "") or "")
        base_req = _and_exprs(self.delivery_requirements, settings_req)
        if "requirements" in job.per_component:
            per_item("htmap_requirements", (_and_exprs(base_req, str(r or "")) or "true" for r in option_values("requirements")))
            desc["requirements"] = "$(htmap_requirements)"
        else:
            req = and_requirements(*(r for r in (base_req, job.fixed.get("requirements", "")) if r))
            if req:
                desc["requirements"] = str(req)

        self._policies(desc, per_item, option_values)

        # -- late materialization -----------------------------------------------------
        lowered = {k.lower() for k in desc}
        if len(components) > LATE_MATERIALIZATION_THRESHOLD and not lowered & {"max_idle", "max_materialize"}:
            desc["max_idle"] = str(DEFAULT_MAX_IDLE)
        if is_late(desc):
            self._deferred_acts(desc)

        for key, value in self.custom_descriptors.items():  # registered delivery methods win
            if key == "transfer_input_files" and desc.get(key):
                extra = value if isinstance(value, str) else ",".join(map(str, value))
                desc[key] = desc[key] + "," + extra
            else:
                desc[key] = descriptor_value(value) if not isinstance(value, (list, tuple)) else ",".join(map(str, value))
        return desc, items

    def _deferred_acts(self, desc: Dict[str, str]) -> None:
        """A late cluster's jobs read ``engine/deferred`` when they start (see ``deferred``): the
        acts meant for them before they were jobs become holds, removals and edits here."""
        desc["transfer_input_files"] = desc["transfer_input_files"].replace(
            ",", f",{self.job.directory.absolute() / 'engine' / deferred.FILE_NAME},", 1)
        exits = ((deferred.HOLD_EXIT, HOLD_DEFERRED, '"held by the user (htmap hold) before it started"'),
                 (deferred.REMOVE_EXIT, HOLD_DEFERRED_REMOVE, classad_string(deferred.REMOVE_REASON)),
                 (deferred.EDIT_EXIT, HOLD_DEFERRED_EDIT, classad_string(deferred.EDIT_REASON)))
        reason, subcode = desc["on_exit_hold_reason"], desc["on_exit_hold_subcode"]
        for code, sub, why in exits:
            reason = f"ifThenElse(ExitBySignal =!= true && ExitCode =?= {code}, {why}, {reason})"
            subcode = f"ifThenElse(ExitBySignal =!= true && ExitCode =?= {code}, {sub}, {subcode})"
        desc["on_exit_hold_reason"], desc["on_exit_hold_subcode"] = reason, subcode
        remove = f"(JobStatus == 5) && (HoldReasonCode =?= 3) && (HoldReasonSubCode =?= {HOLD_DEFERRED_REMOVE})"
        user_remove = desc.get("periodic_remove", "")
        desc["periodic_remove"] = f"({user_remove}) || ({remove})" if user_remove else remove

    @staticmethod
    def _check_input_names(paths: Sequence[str]) -> None:
        """Input files land in the scratch directory by name: they must not replace htmap's own."""
        for path in paths:
            name = str(path).rstrip("/").rsplit("/", 1)[-1]
            if str(path).endswith("/"):
                continue  # a directory's contents: names unknown until transfer
            if name in RESERVED_INPUT_NAMES or name.startswith("_htmap") or re.fullmatch(r"\d+\.(in|out)", name):
                raise exceptions.InvalidOption(
                    f"input file {path!r} would land in the job's scratch directory as {name!r}, "
                    "a name htmap uses itself; rename it")

    def _policies(self, desc: Dict[str, str], per_item, option_values) -> None:
        job = self.job
        desc["on_exit_hold"] = f"(ExitBySignal =?= true) || (ExitCode =!= 0 && ExitCode =!= {RETRY_EXIT_CODE})"
        desc["on_exit_hold_reason"] = (
            'ifThenElse(ExitBySignal =?= true, strcat("the htmap runner was killed by signal ", ExitSignal), '
            'strcat("the htmap runner exited with status ", ExitCode))'
        )
        desc["on_exit_hold_subcode"] = f"ifThenElse(ExitBySignal =?= true, {HOLD_RUNNER_SIGNAL}, {HOLD_RUNNER_EXIT})"

        holds: List[Tuple[str, str, int]] = []  # (condition, reason expression, subcode)
        if self._has("request_memory"):
            holds.append((
                "(JobStatus == 2) && (MemoryUsage =!= undefined) && (MemoryUsage > RequestMemory)",
                'strcat("the component used ", MemoryUsage, " MB of memory, more than its request_memory of ", '
                'RequestMemory, " MB")',
                HOLD_MEMORY,
            ))
        if self._has("max_runtime"):
            if "max_runtime" in job.per_component:
                per_item("htmap_max_runtime", (int(v) for v in option_values("max_runtime")))
                desc["MY.HTMapMaxRuntime"] = "$(htmap_max_runtime)"
            else:
                desc["MY.HTMapMaxRuntime"] = str(int(job.fixed["max_runtime"]))
            holds.append((
                "(JobStatus == 2) && (JobCurrentStartDate =!= undefined) && "
                "((time() - JobCurrentStartDate) > HTMapMaxRuntime)",
                'strcat("the component ran longer than its max_runtime of ", HTMapMaxRuntime, " s")',
                HOLD_RUNTIME,
            ))
        user_hold = desc.pop("periodic_hold", "")
        if user_hold:
            holds.append((user_hold, desc.pop("periodic_hold_reason", '"the periodic_hold expression became true"'),
                          int(desc.pop("periodic_hold_subcode", 0) or 0)))
        if holds:
            desc["periodic_hold"] = " || ".join(f"({cond})" for cond, _r, _s in holds)
            reason, subcode = '"held by policy"', "0"
            for cond, why, code in reversed(holds):
                reason = f"ifThenElse({cond}, {why}, {reason})"
                subcode = f"ifThenElse({cond}, {code}, {subcode})"
            desc["periodic_hold_reason"] = reason
            desc["periodic_hold_subcode"] = subcode

        retries = int(job.fixed.get("max_retries", 0) or 0)
        if retries <= 0:
            return
        desc["MY.HTMapMaxRetries"] = str(retries)
        retryable = (
            f"(HoldReasonCode =?= {HTCONDOR_OUT_OF_MEMORY}) || ((HoldReasonCode =?= 3) && "
            f"(HoldReasonSubCode =?= {HOLD_MEMORY} || HoldReasonSubCode =?= {HOLD_RUNTIME} || "
            f"HoldReasonSubCode =?= {HOLD_RUNNER_SIGNAL}))"
        )
        release = f"({retryable}) && (NumJobStarts <= HTMapMaxRetries)"
        user_release = desc.get("periodic_release", "")
        desc["periodic_release"] = f"({user_release}) || ({release})" if user_release else release
        factor = float(job.fixed.get("retry_memory_factor", 0) or 0)
        if factor > 1 and self._has("request_memory"):
            base = desc["request_memory"]
            memory_hold = (f"(LastHoldReasonCode =?= {HTCONDOR_OUT_OF_MEMORY}) || "
                           f"(LastHoldReasonCode =?= 3 && LastHoldReasonSubCode =?= {HOLD_MEMORY})")
            desc["MY.HTMapRequestMemory"] = base
            desc["request_memory"] = (
                f"ifThenElse((MemoryUsage =!= undefined) && ({memory_hold}), "
                f"max({{HTMapRequestMemory, int(MemoryUsage * {factor!r})}}), HTMapRequestMemory)"
            )
        names = job.fixed.get("retry_exceptions") or []
        if isinstance(names, str):
            names = [names]
        if names:
            for n in names:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", str(n)):
                    raise exceptions.InvalidOption(f"retry_exceptions entry {n!r} is not an exception class name")
            env = f"HTMAP_RETRY_EXCEPTIONS={','.join(str(n).rsplit('.', 1)[-1] for n in names)}"
            user_env = desc.get("environment", "")
            if user_env.startswith('"') and user_env.endswith('"'):
                desc["environment"] = f'"{user_env[1:-1]} {env}"'
            elif user_env:
                desc["environment"] = f"{user_env};{env}"
            else:
                desc["environment"] = f'"{env}"'
            desc["on_exit_remove"] = f"(ExitCode =!= {RETRY_EXIT_CODE}) || (NumJobStarts > HTMapMaxRetries)"
