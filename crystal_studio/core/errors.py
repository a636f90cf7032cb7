"""User-facing errors. Anything a user can cause raises a subclass of CrystalStudioError."""


class CrystalStudioError(Exception):
    """An error caused by user input; its message says what went wrong and where."""


class InvalidRecordError(CrystalStudioError):
    """One record (file, CIF block, CSV row, XYZ frame) could not be turned into a crystal."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ProjectError(CrystalStudioError):
    """A project file is missing, unreadable, or from a newer version of Crystal Studio."""


class OutputExistsError(CrystalStudioError):
    """Output files exist already and overwriting was not asked for; nothing was written."""


class NotFoundError(CrystalStudioError):
    """A dataset, structure, model or run named by the user does not exist."""


class Cancelled(Exception):
    """Raised inside a job when the user cancelled it; not an error."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's or the system's request to stop) arrived during a command-line
    job: handled as Ctrl-C is, so transactions roll back and the run is marked cancelled."""
