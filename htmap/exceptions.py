"""Every error htmap raises on purpose is an ``HTMapException``."""


class HTMapException(Exception):
    """Base class of all htmap errors."""


class TimeoutError(HTMapException):  # noqa: A001 - HTMap 0.6 name
    """A blocking call ran out of time."""


class MissingSetting(HTMapException):
    """A setting was asked for that has no value anywhere."""


class OutputNotFound(HTMapException):
    """A component's output is not available (yet)."""


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
    """The caller's input iterator raised while the map was being built."""


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
    """An error whose message is the whole story: no traceback needed."""


class CannotRerunComponents(HTMapException):
    """Only finished components can be rerun."""


class CannotControlMap(HTMapException):
    """The map's engine cannot be reached from here (e.g. another host's local engine)."""


class NoRoomInStore(HTMapException, OSError):
    """HTMAP_DIR is full (or over quota) while a map was being written; nothing of it was kept.

    Also an ``OSError`` with the original ``errno``."""


class TooManyComponents(HTMapException):
    """The inputs went past the ``MAX_COMPONENTS`` setting (an endless iterator?); nothing was submitted."""


class MapIsDamaged(HTMapException):
    """A file of the map (or its tag file) cannot be read; ``htmap remove --force TAG`` deletes it."""


class SupervisorSocketTaken(HTMapException):
    """Another user's process holds the local supervisor's socket, so no supervisor of ours can listen."""


class SettingsFileError(HTMapException):
    """The settings file (``~/.htmaprc``) cannot be read; htmap needs it fixed or removed."""
