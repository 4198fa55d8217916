"""User-facing errors: a wrong input (config, override, checkpoint, dataset, path) raises one of
these with a message that names what is wrong and what was expected. Entry points print the
message on one line and exit with status 2 (see :func:`gfocal.cli.run`); ``--debug`` or
``GFOCAL_DEBUG=1`` shows the traceback instead."""

__all__ = ["GFocalError", "ConfigError", "CheckpointError", "DatasetError", "InputError"]


class GFocalError(Exception):
    """A mistake in the input, not a bug: the message is what the user needs to fix it."""


class ConfigError(GFocalError, ValueError):
    """A config file or override that cannot be used as given."""


class CheckpointError(GFocalError, ValueError):
    """A weights file that is not a plain checkpoint or does not fit the model."""


class DatasetError(GFocalError, ValueError):
    """A dataset that cannot be trained or evaluated on as registered."""


class InputError(GFocalError, ValueError):
    """An image or other input given to a command or the predictor that cannot be used."""
