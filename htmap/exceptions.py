"""Every error htmap raises on purpose is an ``HTMapException``."""


class HTMapException(Exception):
    """Base class of all htmap errors."""


class TimeoutError(HTMapException):  # noqa: A001 - HTMap 0.6 name
    """A blocking call ran out of time."""


class MissingSetting(HTMapException):
    """A setting was asked for that has no value anywhere."""


class OutputNotFound(HTMapException, FileNotFoundError):
    """A component's output (or its stdout/stderr) is not available (yet).

    Also a ``FileNotFoundError``, which HTMap 0.6 raised for ``m.stdout[i]`` of an unfinished
    component."""


class NoMapYet(HTMapException):
    """A MapBuilder's map was asked for inside its ``with`` block."""


class TagAlreadyExists(HTMapException):
    """The tag names an existing map."""


class InvalidTag(HTMapException):
    """The tag is not a valid map name."""


class TagNotFound(HTMapException):
    """No map has this tag."""


class EmptyMap(HTMapException):
    """A map was given no inputs."""


class ReservedOptionKeyword(HTMapException):
    """A map option uses a key htmap sets itself."""


class MisalignedInputData(HTMapException):
    """A per-component option does not have one value per component."""


class CannotRetagMap(HTMapException):
    """The map cannot be retagged."""


class RetagTagAlreadyExists(TagAlreadyExists, CannotRetagMap):
    """``Map.retag`` was given a tag another map has (caught as either base class)."""


class RetagInvalidTag(InvalidTag, CannotRetagMap):
    """``Map.retag`` was given a tag that is not a valid map name (caught as either base class)."""


class UnknownPythonDeliveryMethod(HTMapException):
    """The delivery method is not registered."""


class UnknownEngine(HTMapException):
    """The engine name is not one htmap knows."""


class EngineUnavailable(HTMapException):
    """The chosen engine cannot run here (missing bindings, no cluster)."""


class InvalidOption(HTMapException):
    """A map option has a value htmap cannot use."""


class CannotPickle(HTMapException):
    """The function or an input cannot be serialized by cloudpickle."""


class InputIteratorFailed(HTMapException):
    """Kept for old imports; htmap re-raises the input iterator's own exception instead."""


class MapWasRemoved(HTMapException):
    """The map was removed; its object can no longer be used."""


class InvalidOutputStatus(HTMapException):
    """A component output file is corrupt or of an unknown kind."""


class MapComponentError(HTMapException):
    """A component raised an exception or failed; the message includes its error report.

    Parameters
    ----------
    message : str
        The message.
    component_error : ComponentError, optional
        The component's error report, kept as the ``component_error`` attribute.
    """

    def __init__(self, message: str, component_error=None):
        super().__init__(message)
        self.component_error = component_error


class MapComponentHeld(HTMapException):
    """A component is held; carries the hold reason."""


class ExpectedError(HTMapException):
    """A component that succeeded was asked for its error (``get_err``), as in HTMap 0.6."""


class ComponentSucceeded(ExpectedError, InvalidOutputStatus):
    """``get_err`` of a component that completed without error (caught as either base class)."""


class CannotRerunComponents(HTMapException):
    """Only finished components can be rerun."""


class CannotControlMap(HTMapException):
    """The map's engine cannot be reached from here (e.g. another host's local engine)."""


class NoRoomInStore(HTMapException, OSError):
    """HTMAP_DIR is full (or over quota) while a map was being written; nothing of it was kept.

    Also an ``OSError`` with the original ``errno``."""


class CannotTransplantPython(HTMapException):
    """This Python installation cannot be packed for the transplant delivery method."""


class InsufficientHTCondorVersion(HTMapException):
    """The HTCondor found is too old for a feature htmap needs."""


class CorruptEventLog(HTMapException):
    """An engine's event log holds something htmap cannot read."""


class TooManyComponents(HTMapException):
    """The inputs went past the ``MAX_COMPONENTS`` setting (an endless iterator?); nothing was submitted."""


class MapIsDamaged(HTMapException):
    """A file of the map (or its tag file) cannot be read; ``htmap remove --force TAG`` deletes it."""


class SupervisorSocketTaken(HTMapException):
    """Another user's process holds the local supervisor's socket, so no supervisor of ours can listen."""


class SettingsFileError(HTMapException):
    """The settings file (``~/.htmaprc``) cannot be read; htmap needs it fixed or removed."""
