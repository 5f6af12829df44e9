"""Errors a user can act on: each message names the bad value and the fix."""


class ConfigError(ValueError):
    """A configuration value that cannot run; raised before any training starts."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""
