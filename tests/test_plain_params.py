"""The stdlib parameter converters (advisor/cli/plain_params.py) give what Typer gives: the same
value for every plain input, and Typer's own error for everything else."""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from typing import Any, get_args, get_origin

import pytest
import typer.main

from advisor.cli import COMMANDS, PlainParamsCommand, app, plain_params

coercion = pytest.importorskip("typer._coercion", reason="this Typer converts without pydantic")

SAMPLES: dict[Any, tuple[Any, ...]] = {
    str: ("x", "RTX 4090", "", "ü", None),
    int: (
        "0",
        "7",
        "007",
        "-3",
        "+3",
        " 5",
        "1_000",
        "12345678901234567890",
        "3.0",
        "abc",
        "-",
        "\u0663",
        5,
        None,
    ),
    bool: (True, False, "true", "0", None),
}


def _samples(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        values = _samples(item)
        return ((), tuple(v for v in values if v is not None), (values[0],), ["a", values[0]])
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        members = list(annotation)
        return (
            *members,
            *(m.value for m in members),
            *(str(m.value).upper() for m in members),
            "no-such-choice",
            None,
        )
    return SAMPLES[annotation]


def _outcome(runtime: Any, value: Any, param: Any, ctx: Any) -> Any:
    try:
        result = runtime.coerce(value, param=param, ctx=ctx)
    except Exception as error:  # Typer's BadParameter and friends: compare what they say
        return (type(error), str(error))
    return (type(result), result)


def _plain_commands() -> Iterator[Any]:
    root = typer.main.get_command(app)
    yield root
    for name in COMMANDS:
        command = root.commands[name]  # type: ignore[attr-defined]
        if isinstance(command, PlainParamsCommand):
            yield command


def test_the_read_only_commands_convert_plainly() -> None:
    """fit, which-models and estimate are built with the plain converters."""
    root = typer.main.get_command(app)
    for name in ("fit", "which-models", "estimate"):
        assert isinstance(root.commands[name], PlainParamsCommand), name  # type: ignore[attr-defined]


def test_every_plain_parameter_converts_as_typer_does() -> None:
    """For every parameter the plain converters take, each sample gives Typer's own outcome."""
    from typer._click import Context

    checked = 0
    for command in _plain_commands():
        ctx = Context(command)
        params = command.get_params(ctx)
        plain_params.install(params)
        for param in params:
            runtime = param.get_runtime_param()
            internals = plain_params._typer_internals()
            assert internals is not None
            if not isinstance(runtime, internals.param_class):
                continue
            own = coercion.build_runtime_param(param.type_descriptor)
            for value in _samples(param.type_descriptor.annotation):
                expected = _outcome(own, value, param, ctx)
                assert _outcome(runtime, value, param, ctx) == expected, (param.name, value)
                checked += 1
    assert checked > 500


def test_other_annotations_stay_with_typer() -> None:
    """Bounds, parsers and types other than str, int, bool, Enum and their lists get none."""
    from typer.models import OptionInfo

    assert plain_params.converter(float, OptionInfo()) is None
    assert plain_params.converter(int, OptionInfo(min=1)) is None
    assert plain_params.converter(str, OptionInfo(parser=str.upper)) is None
    assert plain_params.converter(list[float], OptionInfo()) is None
    assert plain_params.converter(list[int], OptionInfo()) is not None
