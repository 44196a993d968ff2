"""catalog/tables.py: a given parameter count must agree with the architecture's."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from advisor.arch import count_params
from catalog.tables import PUBLISHED_PARAMS_TOLERANCE, ModelCreate

TINY: dict[str, Any] = {
    "slug": "tiny",
    "name": "Tiny",
    "family": "tiny",
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "head_dim": 16,
    "intermediate_size": 128,
    "vocab_size": 256,
    "max_position_embeddings": 128,
    "source": "test",
}


def _computed() -> int:
    return count_params(ModelCreate(**TINY).architecture()).total


def test_left_out_count_is_computed() -> None:
    """Without params the computed count is stored, marked as not published."""
    model = ModelCreate(**TINY)
    assert (model.params, model.params_published) == (_computed(), False)
    assert model.params == 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64 + 2 * 256 * 64


def test_equal_count_is_accepted() -> None:
    """A given count equal to the computed one is kept."""
    assert ModelCreate(**TINY, params=_computed()).params == _computed()


def test_contradicting_count_is_refused() -> None:
    """A count the architecture cannot have is refused, naming both counts."""
    with pytest.raises(ValidationError) as error:
        ModelCreate(**TINY, params=123)
    assert error.value.errors()[0]["msg"] == (
        f"Value error, params 123 contradicts the count computed from the architecture, "
        f"{_computed():,}"
    )


def test_published_count_within_tolerance() -> None:
    """A published count may differ by up to the tolerance (tensors the layout leaves out),
    not more."""
    near = int(_computed() * (1 + PUBLISHED_PARAMS_TOLERANCE))
    assert ModelCreate(**TINY, params=near, params_published=True).params == near
    far = near + 2
    with pytest.raises(ValidationError) as error:
        ModelCreate(**TINY, params=far, params_published=True)
    assert error.value.errors()[0]["msg"] == (
        f"Value error, params {far:,} contradicts the count computed from the architecture, "
        f"{_computed():,} by more than 0.5%"
    )
