"""What a config option may hold, read from the type hints of what the option configures (a
`_target_`'s constructor, or the function a group is passed to): a value of the wrong type, or
outside the `Range` an `Annotated` hint gives, is one ConfigError naming the key as the user
types it, before anything is written. A new option is checked by its type hint alone."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from al.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The values a number may take: ≥ `minimum` (> when `exclusive`) and ≤ `maximum`."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False

    def holds(self, value: float) -> bool:
        low = (
            self.minimum is None
            or value > self.minimum
            or (not self.exclusive and value == self.minimum)
        )
        return low and (self.maximum is None or value <= self.maximum)

    def __str__(self) -> str:
        if self.maximum is not None and self.minimum is not None:
            return f"in [{self.minimum:g}, {self.maximum:g}]"
        if self.maximum is not None:
            return f"≤ {self.maximum:g}"
        return f"{'>' if self.exclusive else '≥'} {self.minimum:g}"


PositiveInt = Annotated[int, Range(minimum=1)]
NonNegativeInt = Annotated[int, Range(minimum=0)]
PositiveFloat = Annotated[float, Range(minimum=0, exclusive=True)]
NonNegativeFloat = Annotated[float, Range(minimum=0)]
Probability = Annotated[float, Range(minimum=0, maximum=1)]

PLAIN = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def check_target_options(node: DictConfig, key: str) -> None:
    """Check the options of the `_target_` node at `key` (e.g. `method.selector`), and of the
    `_target_` nodes inside it, against the hints of what each builds."""
    for name, value in node.items():
        if isinstance(value, DictConfig) and "_target_" in value:
            check_target_options(value, f"{key}.{name}")
    check_options(node, key, get_object(node._target_))


def check_options(node: DictConfig, key: str, target: Callable) -> None:
    """Check each option of `node` (the keyword arguments of `target`) against its type hint."""
    hints, defaults = typed_parameters(target)
    check_known(node, key, target)
    for name in node:
        if name.startswith("_") or name not in hints or OmegaConf.is_missing(node, name):
            continue
        value = node[name]
        if value is None:  # left for the run to fill in (an image folder's classes) or unset
            continue
        if isinstance(value, DictConfig) and "_target_" in value:
            continue
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if not conforms(value, hints[name]):
            example = defaults.get(name)
            fix = "" if example is None else f": e.g. {key}.{name}={example_text(example)}"
            raise ConfigError(f"{key}.{name}={value!r} must be {describe(hints[name])}{fix}")


def check_known(node: DictConfig, key: str, target: Callable) -> None:
    """Refuse an option `target` does not take (a misspelt or `+`-added key), naming those it
    takes; a target with `**kwargs`, or one whose signature cannot be read, takes any."""
    parameters = accepted_names(target)
    if parameters is None:
        return
    unknown = [name for name in node if not name.startswith("_") and name not in parameters]
    if not unknown:
        return
    name = getattr(target, "__qualname__", str(target))
    known = ", ".join(parameters)
    fix = f"use one of {known}" if known else f"it takes none: drop {key}.{unknown[0]}"
    raise ConfigError(f"{key}.{unknown[0]} is not an option of {name}: {fix}")


def constructor_chain(target: Callable) -> tuple[list[Callable], bool]:
    """The functions `target`'s keyword arguments reach: a class's constructor, then each
    parent's it passes `**kwargs` on to; and whether the last still takes any keyword."""
    if not inspect.isclass(target):
        return [target], takes_any_keyword(target)
    chain = []
    for owner in target.__mro__:
        if "__init__" not in vars(owner) or owner is object:
            continue
        chain.append(owner.__init__)
        if not takes_any_keyword(owner.__init__):
            return chain, False
    return chain, True


def takes_any_keyword(function: Callable) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in parameters)


def accepted_names(target: Callable) -> list[str] | None:
    """The keyword arguments `target` takes (see `constructor_chain`); None where it takes any
    or its signature cannot be read."""
    chain, open_ended = constructor_chain(target)
    if open_ended:
        return None
    names: list[str] = []
    for function in chain:
        for p in inspect.signature(function).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                names.append(p.name)
    return [name for name in names if name != "self"]


def typed_parameters(target: Callable) -> tuple[dict[str, Any], dict[str, Any]]:
    """The type hints and defaults of the parameters of `target` (a class: of its constructor
    and the parents' it passes `**kwargs` on to); no hints where they cannot be resolved."""
    hints: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for function in reversed(constructor_chain(target)[0]):  # a subclass's word wins
        try:
            hints |= typing.get_type_hints(function, include_extras=True)
            parameters = inspect.signature(function).parameters
        except (NameError, TypeError, ValueError):
            return {}, {}
        defaults |= {n: p.default for n, p in parameters.items() if p.default is not p.empty}
    return {name: hint for name, hint in hints.items() if name != "return"}, defaults


def conforms(value: Any, hint: Any) -> bool:
    """Whether a config value fits `hint`; hints no config value can be judged by (a callable,
    a class a YAML value is not) accept anything."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        ranges = [r for r in hint.__metadata__ if isinstance(r, Range)]
        return conforms(value, arguments[0]) and all(r.holds(value) for r in ranges)
    if origin in (typing.Union, types.UnionType):
        if not judgeable(hint):
            return True  # nothing but classes a YAML value never is (and None)
        return any(
            conforms(value, arm) if judgeable(arm) or arm is type(None) else isinstance(value, arm)
            for arm in arguments
            if judgeable(arm) or arm is type(None) or isinstance(arm, type)
        )
    if origin is typing.Literal:
        return value in arguments
    if hint is type(None) or hint is None:
        return value is None
    if hint in PLAIN:
        return plain_fits(value, hint)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return isinstance(value, list | tuple) and items_conform(value, origin, arguments)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, dict)
    return not judgeable(hint) or not isinstance(hint, type) or isinstance(value, hint)


def items_conform(items: list | tuple, origin: Any, arguments: tuple) -> bool:
    """A list's items against `Sequence[T]`/`list[T]`/`tuple[T, ...]`, or a `tuple[A, B]`'s."""
    if origin is tuple and arguments and arguments[-1] is not Ellipsis:
        return len(items) == len(arguments) and all(map(conforms, items, arguments))
    return not arguments or all(conforms(item, arguments[0]) for item in items)


def judgeable(hint: Any) -> bool:
    """Whether a YAML value can be told to fit `hint` or not: the plain types, None, literals,
    lists, maps, and unions and ranges of them."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return judgeable(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return any(judgeable(arm) for arm in typing.get_args(hint) if arm is not type(None))
    return (
        hint in PLAIN
        or origin in (typing.Literal, list, tuple, Sequence, dict, Mapping)
        or hint in (list, tuple, dict)
    )


def plain_fits(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def describe(hint: Any) -> str:
    """`hint` in words: "an integer ≥ 1", "a number or null", "one of 'paper', 'code'"."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        ranges = " ".join(str(r) for r in hint.__metadata__ if isinstance(r, Range))
        return f"{describe(arguments[0])} {ranges}".strip()
    if origin in (typing.Union, types.UnionType):
        literals = [value for arm in arguments for value in literal_values(arm)]
        others = [arm for arm in arguments if judgeable(arm) and not literal_values(arm)]
        words = [describe(typing.Literal[tuple(literals)])] if literals else []
        words += [describe(arm) for arm in others]
        return " or ".join(words + (["null"] if type(None) in arguments else []))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in arguments)
    if hint is type(None) or hint is None:
        return "null"
    if hint in PLAIN:
        return PLAIN[hint]
    if origin in (dict, Mapping) or hint is dict:
        return "a mapping"
    return "a list"


def literal_values(hint: Any) -> tuple:
    """The values of a Literal, or of a union of Literals; () for anything else."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [literal_values(arm) for arm in typing.get_args(hint)]
        return tuple(v for values in arms for v in values) if all(arms) else ()
    return ()


def example_text(value: Any) -> str:
    """A default as a user types it on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
