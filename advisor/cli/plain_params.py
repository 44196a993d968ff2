"""Converting command-line values without pydantic, for the plain parameter types we use.

Typer (from 0.2x) converts every parameter through a pydantic `TypeAdapter` that it builds
on first use: importing pydantic and building one adapter per parameter costs more than the
rest of a read-only command (benchmarks/cold_start.py). For the annotations our commands
declare (str, int, an Enum, a list of these), the standard library gives the same value:
`install` gives such parameters a converter that handles the plain cases and hands anything
else (a malformed number, an unknown choice, an odd input) to Typer's own adapter, so results
and error messages stay Typer's. tests/test_plain_params.py checks that on every parameter of
every command. On a Typer without adapters (no `typer._coercion`), nothing is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from functools import cache
from typing import Any, NamedTuple, get_args, get_origin

# What a plain converter returns when it does not handle a value itself.
_DEFER = object()

Leaf = Callable[[Any, Any], Any]


def _plain_str(value: Any, _ctx: Any) -> Any:
    return value if isinstance(value, str) else _DEFER


def _plain_bool(value: Any, _ctx: Any) -> Any:
    return value if isinstance(value, bool) else _DEFER


def _plain_int(value: Any, _ctx: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        digits = value.removeprefix("-")
        if digits and digits.isascii() and digits.isdigit():
            return int(value)
    return _DEFER


def _plain_choice(enum: type[Enum], case_sensitive: bool) -> Leaf | None:
    internals = _typer_internals()
    if internals is None:
        return None
    coerce_cli_choice = internals.coerce_choice
    choices = list(enum)

    def convert(value: Any, ctx: Any) -> Any:
        try:
            return coerce_cli_choice(value, choices=choices, case_sensitive=case_sensitive, ctx=ctx)
        except ValueError:
            return _DEFER

    return convert


def leaf_converter(annotation: Any, parameter_info: Any) -> Leaf | None:
    """A converter for a single value of `annotation`, or None when Typer must convert it
    (custom parsers, bounds, paths, files and every other type)."""
    info = parameter_info
    if info.parser is not None or info.min is not None or info.max is not None or info.clamp:
        return None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _plain_choice(annotation, bool(info.case_sensitive))
    if annotation is str:
        return _plain_str
    if annotation is int:
        return _plain_int
    if annotation is bool:
        return _plain_bool
    return None


def converter(annotation: Any, parameter_info: Any) -> Leaf | None:
    """A converter for a parameter's value (a list annotation takes a sequence of values)."""
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        leaf = leaf_converter(item, parameter_info)
        if leaf is None:
            return None
        item_leaf = leaf

        def convert_list(value: Any, ctx: Any) -> Any:
            if not isinstance(value, list | tuple):
                return _DEFER
            items = [item_leaf(v, ctx) for v in value]
            return _DEFER if any(i is _DEFER for i in items) else items

        return convert_list
    return leaf_converter(annotation, parameter_info)


class _TyperInternals(NamedTuple):
    """The parts of Typer's adapter-based conversion that the plain converters plug into."""

    param_class: type[Any]  # Typer's runtime parameter, extended with a plain converter
    typer_parameter: type[Any]  # the parameter class that holds a runtime parameter
    coerce_choice: Callable[..., Any]  # Typer's own choice matching (enums)


@cache
def _typer_internals() -> _TyperInternals | None:
    """None on a Typer without adapter-based conversion (nothing to speed up there)."""
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
        from typer._param_types import coerce_cli_choice
        from typer.core import _TyperParameter
    except ImportError:
        return None

    class PlainRuntimeParam(RuntimeParam):
        # Not a dataclass of its own: generating one costs more than the rest of this module.
        def __init__(
            self, *, parameter_info: Any, annotation: Any, convert: Leaf, descriptor: Any
        ) -> None:
            super().__init__(parameter_info=parameter_info, annotation=annotation)
            object.__setattr__(self, "convert", convert)  # the parent is a frozen dataclass
            object.__setattr__(self, "descriptor", descriptor)

        convert: Leaf
        descriptor: Any

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            result = self.convert(value, ctx)
            if result is _DEFER:
                typer_own = build_runtime_param(self.descriptor)
                return typer_own._coerce_value(value, param=param, ctx=ctx)
            return result

    return _TyperInternals(PlainRuntimeParam, _TyperParameter, coerce_cli_choice)


def install(params: Iterable[Any]) -> None:
    """Give the plain ones of a command's `params` a stdlib converter (see the module's
    docstring); call it with `command.get_params(ctx)`, which includes `--help`."""
    internals = _typer_internals()
    if internals is None:
        return
    for param in params:
        if not isinstance(param, internals.typer_parameter) or param._runtime_param is not None:
            continue
        descriptor = param.type_descriptor
        if descriptor.file_annotation is not None:
            continue
        convert = converter(descriptor.annotation, descriptor.parameter_info)
        if convert is not None:
            param._runtime_param = internals.param_class(
                parameter_info=descriptor.parameter_info,
                annotation=descriptor.annotation,
                convert=convert,
                descriptor=descriptor,
            )
