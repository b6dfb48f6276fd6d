"""Errors deepaudit raises for bad input, each naming the file or value at fault."""


class DeepAuditError(Exception):
    """Base class: a problem with the user's input, reported without a traceback by the CLI."""


class OrganismError(DeepAuditError):
    """A model folder is missing a file, or a file is corrupt or in an unsafe format."""


class DataError(DeepAuditError):
    """A data budget is empty, has the wrong shape, or contains NaNs."""
