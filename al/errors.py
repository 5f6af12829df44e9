"""Errors a user can act on: each message names the bad value and the fix."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate


class ConfigError(ValueError):
    """A configuration value that cannot run; raised before any training starts."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def build(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, letting a ConfigError through unwrapped so its message leads."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise
