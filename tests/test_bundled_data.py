"""The data shipped in the package: enough rows, every one sourced, every count recomputed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from advisor.arch import architecture_from_hf_config, count_params
from advisor.units import GIB
from catalog import bundled
from catalog.tables import FamilyCreate, GPUCreate, ModelCreate, QuantCreate, alias_key

# A published count may exceed the layout's by tensors it leaves out (e.g. DeepSeek's
# multi-token-prediction module); the issue allows 0.5 % where the count is not exact.
PUBLISHED_TOLERANCE = 0.005
CONFIGS = Path(__file__).resolve().parent / "data" / "configs"
DATA = bundled.load()


def test_enough_rows() -> None:
    """At least 100 GPUs, 120 models in 25 families, and the quantization formats."""
    assert len(DATA.gpus) >= 100
    assert len(DATA.models) >= 120
    assert len(DATA.families) >= 25
    assert len(DATA.quants) >= 30


def test_every_row_has_a_source() -> None:
    """Every GPU, model, family and format says where its numbers come from."""
    rows: list[GPUCreate | ModelCreate | FamilyCreate | QuantCreate] = [
        *DATA.gpus,
        *DATA.models,
        *DATA.families,
        *DATA.quants,
    ]
    for row in rows:
        assert row.source.strip(), row.slug


@pytest.mark.parametrize("model", DATA.models, ids=lambda m: m.slug)
def test_parameter_count_recomputed(model: ModelCreate) -> None:
    """Each model's stored count equals the count computed from its architecture; a
    published count may differ by at most 0.5 %, and the row's notes must say why."""
    computed = count_params(model.architecture()).total
    if computed == model.params:
        return
    assert model.params_published, f"{model.slug}: computed {computed:,} != {model.params:,}"
    assert abs(computed - model.params) / model.params <= PUBLISHED_TOLERANCE, model.slug
    assert model.notes, f"{model.slug}: differs from the computed count without a note"


@pytest.mark.parametrize("kind", ["gpus", "models"])
def test_names_are_unambiguous(kind: str) -> None:
    """No slug, name or alias refers to two rows (compared as users type them)."""
    rows = DATA.gpus if kind == "gpus" else DATA.models
    owners: dict[str, set[str]] = {}
    for row in rows:
        for name in (row.slug, row.name, *row.aliases):
            owners.setdefault(alias_key(name), set()).add(row.slug)
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}


def test_slugs_unique_and_families_known() -> None:
    """Slugs are unique per kind, and every model's family is shipped."""
    for rows in (DATA.gpus, DATA.models, DATA.families, DATA.quants):
        duplicated = [s for s, n in Counter(r.slug for r in rows).items() if n > 1]
        assert duplicated == []
    families = {f.slug for f in DATA.families}
    assert {m.family for m in DATA.models} <= families


@pytest.mark.parametrize(
    "slug",
    [
        "llama-7b",
        "llama-13b",
        "llama-33b",
        "llama-65b",
        "llama-2-7b",
        "llama-2-70b",
        "llama-3-8b",
        "llama-3.1-405b",
        "llama-3.2-1b",
        "mistral-7b-v0.1",
        "mixtral-8x7b",
        "mixtral-8x22b",
        "qwen2.5-0.5b",
        "qwen3-30b-a3b",
        "gemma-2-9b",
        "gpt2",
        "gpt2-xl",
        "opt-1.3b",
        "bloom-176b",
        "deepseek-v3",
        "gpt-neox-20b",
        "pythia-1.4b",
    ],
)
def test_required_models_present(slug: str) -> None:
    """The models the issues and tests name are in the catalog."""
    assert slug in {m.slug for m in DATA.models}


def _gpu(slug: str) -> GPUCreate:
    return next(g for g in DATA.gpus if g.slug == slug)


def test_figures_a_popular_dataset_gets_wrong() -> None:
    """B200 has 180 GB and 8 TB/s; MI300X has 5.3 TB/s; RTX 4090 has 24 GiB."""
    b200, mi300x, rtx4090 = (_gpu("b200"), _gpu("mi300x"), _gpu("rtx4090"))
    assert (b200.memory_bytes, b200.bandwidth_bytes_per_s) == (180 * GIB, 8_000_000_000_000)
    assert (mi300x.memory_bytes, mi300x.bandwidth_bytes_per_s) == (192 * GIB, 5_300_000_000_000)
    assert rtx4090.memory_bytes == 24 * GIB


def test_gpu_numbers_within_physical_bounds() -> None:
    """Bounds that catch unit slips (GB/s typed as bytes/s, sparse TFLOPS, MB for GB)."""
    for gpu in DATA.gpus:
        assert 2 * GIB <= gpu.memory_bytes <= 512 * GIB, gpu.slug
        assert 50e9 <= gpu.bandwidth_bytes_per_s <= 10e12, gpu.slug
        # The smallest bundled figure is the Apple M1's 8-core GPU, 2.6 TFLOPS.
        assert gpu.fp16_tflops is None or 2 <= gpu.fp16_tflops <= 3000, gpu.slug
        if gpu.usable_memory_fraction is not None:
            assert gpu.market.value == "unified-memory", gpu.slug


# Apple's GPU TFLOPS for the full chip of each M1/M2 tier (M1 2.6, M1 Pro 5.2, M1 Max 10.4,
# M1 Ultra 21, M2 Ultra 27.2), and for other bins that figure scaled by the bin's GPU cores.
APPLE_TFLOPS = {
    "m1-16gb": 2.6,
    "m1-pro-32gb": 5.2,
    "m1-max-32gb": 7.8,  # 24 of 32 cores
    "m1-max-64gb": 10.4,
    "m1-ultra-64gb": 15.75,  # 48 of 64 cores
    "m1-ultra-128gb": 21.0,
    "m2-24gb": 3.58,  # 10 of the M2 Ultra's 76 cores
    "m2-pro-32gb": 6.8,  # 19 of 76
    "m2-max-32gb": 10.74,  # 30 of 76
    "m2-max-64gb": 13.6,  # 38 of 76
    "m2-max-96gb": 13.6,
    "m2-ultra-64gb": 21.47,  # 60 of 76
    "m2-ultra-192gb": 27.2,
}


def test_apple_figures_are_apples_or_computed_from_them() -> None:
    """M1/M2 rows carry Apple's GPU TFLOPS, or Apple's figure scaled to the row's GPU cores
    and labelled computed; M3 and later, for which Apple publishes no figure or clock, none."""
    apple = [g for g in DATA.gpus if g.vendor.value == "apple"]
    assert {g.slug for g in apple if g.fp16_tflops is not None} == set(APPLE_TFLOPS)
    for gpu in apple:
        assert gpu.fp16_tflops == APPLE_TFLOPS.get(gpu.slug), gpu.slug
        assert gpu.fp8_tflops is None and gpu.int8_tops is None, gpu.slug
        assert gpu.notes is not None
        full_chip = gpu.fp16_tflops in (2.6, 5.2, 10.4, 21.0, 27.2)
        if gpu.fp16_tflops is not None and not full_chip:
            assert "is computed" in gpu.notes, gpu.slug
        if gpu.fp16_tflops is None:
            assert "fp16_tflops null" in gpu.notes, gpu.slug


def test_jetson_orin_figures_are_the_gpus_sparse_figures_halved() -> None:
    """NVIDIA's Orin data sheet prints the GPU's sparse tensor figures (64 GB: 170 INT8 TOPS
    or 85 FP16 TFLOPS; 32 GB: 108 or 54) apart from the DLAs: the catalog stores them dense."""
    for slug, sparse_fp16, sparse_int8 in (
        ("jetson-agx-orin-64gb", 85, 170),
        ("jetson-agx-orin-32gb", 54, 108),
    ):
        gpu = _gpu(slug)
        assert (gpu.fp16_tflops, gpu.int8_tops) == (sparse_fp16 / 2, sparse_int8 / 2), slug
        assert gpu.fp8_tflops is None, slug


# NVIDIA's RTX PRO Blackwell whitepaper: dense BF16/FP16 with FP32 accumulate, Workstation
# Edition 503.8 TFLOPS, Max-Q 438.9; FP8 and INT8 at twice that rate.
RTX_PRO_WHITEPAPER = {"rtx-pro-6000": 503.8, "rtx-pro-6000-max-q": 438.9}
# NVIDIA's AI TOPS (FP4 with sparsity) of the cards the whitepaper does not tabulate.
RTX_PRO_AI_TOPS = {"rtx-pro-5000": 2064, "rtx-pro-5000-72gb": 2064}


def test_rtx_pro_blackwell_figures() -> None:
    """RTX PRO 6000 rows carry the whitepaper's figures; the RTX PRO 5000 rows NVIDIA's AI TOPS
    / 8 (sparse to dense, FP4 to FP16), the rule that turns the Max-Q's 3,511 AI TOPS into the
    whitepaper's 438.9; cards with no NVIDIA figure found stay null and say so."""
    for slug, dense in RTX_PRO_WHITEPAPER.items():
        gpu = _gpu(slug)
        assert (gpu.fp16_tflops, gpu.fp8_tflops, gpu.int8_tops) == (dense, 2 * dense, 2 * dense)
    assert round(3511 / 8, 1) == RTX_PRO_WHITEPAPER["rtx-pro-6000-max-q"]
    for slug, ai_tops in RTX_PRO_AI_TOPS.items():
        gpu = _gpu(slug)
        assert gpu.fp16_tflops == ai_tops / 8, slug
        assert gpu.fp8_tflops == gpu.int8_tops == ai_tops / 4, slug
        assert gpu.notes is not None and "computed" in gpu.notes, slug
    for slug in ("rtx-pro-4500", "rtx-pro-4000"):
        gpu = _gpu(slug)
        assert (gpu.fp16_tflops, gpu.fp8_tflops, gpu.int8_tops) == (None, None, None), slug
        assert gpu.notes is not None and "fp16_tflops null" in gpu.notes, slug


def test_jetson_thor_fp8_is_the_sparse_fp4_figure_quartered() -> None:
    """NVIDIA prints 2,070 FP4 TFLOPS (sparse) beside 1,035 FP8: dense FP8 is 2,070 / 4; no
    FP16 or INT8 figure is published, so none is stored."""
    thor = _gpu("jetson-agx-thor")
    assert (thor.fp16_tflops, thor.fp8_tflops, thor.int8_tops) == (None, 2070 / 4, None)
    for slug in ("dgx-spark", "a10g"):
        gpu = _gpu(slug)
        assert (gpu.fp16_tflops, gpu.fp8_tflops, gpu.int8_tops) == (None, None, None), slug


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.json")))
def test_bundled_architecture_matches_config(name: str) -> None:
    """Bundled models with a reference config.json have exactly its architecture."""
    model = next(m for m in DATA.models if m.slug == name)
    config = architecture_from_hf_config(json.loads((CONFIGS / f"{name}.json").read_text()))
    assert model.architecture() == config
