"""The advisor's search (`advisor.fit`): fewest cards, longest context, largest batch."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from advisor.arch import Architecture
from advisor.enums import Market, Vendor
from advisor.errors import InvalidValueError
from advisor.estimator import (
    ALLOCATOR_RESERVE_FRACTION,
    CUDA_CONTEXT_BYTES,
    METAL_OVERHEAD,
    OVERHEAD_BY_VENDOR,
    estimate,
)
from advisor.fit import (
    Card,
    Level,
    best_level,
    candidate_counts,
    largest_fitting,
    plan,
)
from advisor.units import GIB
from advisor.workload import Method, Parallel, Stage, WeightFormat, Workload
from catalog import queries
from catalog.session import open_catalog

INT4 = WeightFormat(slug="int4", bits_per_weight=4.156, scope="linear")


def arch_of(session: Session, name: str) -> Architecture:
    return queries.get_model(session, name=name).architecture()


def card(
    memory_gib: int,
    slug: str = "card",
    vendor: Vendor = Vendor.nvidia,
    market: Market = Market.datacenter,
) -> Card:
    """A card of `market` (datacenter: 8 per machine over NVLink, machines join)."""
    return Card(slug=slug, name=slug, vendor=vendor, market=market, memory_bytes=memory_gib * GIB)


def inference(seq: int = 2048, **kw: object) -> Level:
    return Level(label="bf16", workload=Workload(stage=Stage.inference, seq=seq, **kw))  # type: ignore[arg-type]


def bf16_and_int4(seq: int = 4096) -> list[Level]:
    """Two inference levels, 16-bit first."""
    int4 = Workload(stage=Stage.inference, seq=seq, weight_format=INT4)
    return [inference(seq=seq), Level(label="int4", quant="int4", workload=int4)]


@given(
    sizes=st.lists(st.integers(0, 10**6), min_size=2, max_size=200),
    budget=st.integers(-10, 2 * 10**8),
)
def test_largest_fitting_matches_a_linear_scan(sizes: list[int], budget: int) -> None:
    """The interpolating search finds exactly what scanning every n finds."""
    table = [sum(sizes[: i + 1]) for i in range(len(sizes))]  # non-decreasing
    found = largest_fitting(lambda n: table[n - 1], 1, len(table), budget)
    expected = max((n for n in range(1, len(table) + 1) if table[n - 1] <= budget), default=None)
    assert found == expected


def test_largest_fitting_counts_few_sizes_on_linear_growth() -> None:
    """On linear growth the search needs a handful of sizes, not a bisection's 24."""
    calls: list[int] = []

    def size(n: int) -> int:
        calls.append(n)
        return 1000 + 37 * n + (n % 3)

    assert largest_fitting(size, 1, 2**24, 10**8) == 2702675  # 1000 + 37n + n % 3 <= 10**8
    assert len(calls) <= 8


def test_65b_at_fp16_needs_two_80gb_cards(session: Session) -> None:
    """The seed's classic: 65B x 2 bytes = 130 GB, so two 80 GB cards (tensor parallel)."""
    arch = arch_of(session, "llama-65b")
    level = inference(seq=2048)
    result = plan(arch, [level], [card(80)])
    (option,) = result.options
    assert option.count == 2
    expected = estimate(arch, dataclasses.replace(level.workload, gpus=2))
    # One need per card (tensors + overhead) against the whole card.
    assert option.per_gpu_bytes == expected.per_gpu_bytes
    assert option.tensor_bytes == expected.tensor_bytes
    assert option.overhead_bytes == CUDA_CONTEXT_BYTES + math.ceil(
        expected.tensor_bytes * ALLOCATOR_RESERVE_FRACTION
    )
    assert option.per_gpu_bytes == option.tensor_bytes + option.overhead_bytes
    assert option.capacity_bytes == 80 * GIB
    assert option.headroom_bytes == 80 * GIB - option.per_gpu_bytes
    assert option.used_fraction == option.per_gpu_bytes / (80 * GIB)


def test_7b_at_bf16_fits_one_24gb_card_at_4k(session: Session) -> None:
    arch = arch_of(session, "llama-2-7b")
    (option,) = plan(arch, [inference(seq=4096)], [card(24)]).options
    assert option.count == 1
    assert option.max_context == 4096  # the model's maximum: nothing longer is searched


def test_70b_at_bf16_does_not_fit_one_80gb_card(session: Session) -> None:
    arch = arch_of(session, "llama-2-70b")
    (alone,) = plan(arch, [inference(seq=4096)], [card(80)], max_gpus=1).options
    assert alone.count is None and not alone.fits
    assert alone.max_context is None and alone.max_batch is None
    assert alone.headroom_bytes < 0
    (pair,) = plan(arch, [inference(seq=4096)], [card(80)]).options
    assert pair.count == 2


def test_counts_follow_the_strategy(session: Session) -> None:
    """TP counts divide the heads; PP counts go up to the layers; training takes any count."""
    arch = arch_of(session, "llama-2-7b")  # 32 heads, 32 layers
    assert candidate_counts(arch, Workload(stage=Stage.inference), 8) == (1, 2, 4, 8)
    pp = Workload(stage=Stage.inference, parallel=Parallel.pp)
    assert candidate_counts(arch, pp, 8) == (1, 2, 3, 4, 5, 6, 7, 8)
    assert candidate_counts(arch, pp, 40) == tuple(range(1, 33))
    assert candidate_counts(arch, Workload(stage=Stage.finetune), 3) == (1, 2, 3)


def test_longest_context_and_batch_are_exact(session: Session) -> None:
    """The reported maxima fit, and one more token or sequence does not."""
    arch = arch_of(session, "llama-3.1-8b")
    level = inference(seq=8192)
    (option,) = plan(arch, [level], [card(24)]).options
    assert option.count == 1
    assert option.max_context is not None and option.max_batch is not None
    capacity = 24 * GIB

    def per_gpu(**kw: int) -> int:
        return estimate(arch, dataclasses.replace(level.workload, **kw)).per_gpu_bytes  # type: ignore[arg-type]

    assert per_gpu(seq=option.max_context, batch=1) <= capacity
    assert per_gpu(seq=option.max_context + 1, batch=1) > capacity
    assert per_gpu(batch=option.max_batch) <= capacity
    assert per_gpu(batch=option.max_batch + 1) > capacity


def test_context_beyond_the_maximum_is_refused_unless_allowed(session: Session) -> None:
    arch = arch_of(session, "llama-2-7b")
    with pytest.raises(InvalidValueError) as error:
        plan(arch, [inference(seq=8192)], [card(80)])
    assert str(error.value) == (
        "a context of 8,192 tokens exceeds the model's maximum of 4,096; pass "
        "--allow-longer-context to size it anyway"
    )
    (option,) = plan(arch, [inference(seq=8192)], [card(80)], allow_longer_context=True).options
    assert option.count == 1
    assert option.max_context is not None and option.max_context > 8192


def test_a_count_the_strategy_cannot_split_is_refused(session: Session) -> None:
    arch = arch_of(session, "llama-2-7b")
    with pytest.raises(InvalidValueError, match="tensor parallelism over 3 GPUs"):
        plan(arch, [inference(parallel=Parallel.tp)], [card(24)], count=3)
    switched = plan(arch, [inference()], [card(24)], count=3)
    assert switched.options[0].estimate.workload.parallel is Parallel.pp
    assert switched.note.startswith("tensor parallelism cannot split 32 heads (32 KV) over 3")


def test_unified_memory_uses_its_usable_share() -> None:
    mac = Card(
        slug="mac",
        name="mac",
        vendor=Vendor.apple,
        market=Market.unified_memory,
        memory_bytes=64 * GIB,
        usable_fraction=0.75,
    )
    assert mac.capacity_bytes == 48 * GIB


def test_each_card_pays_its_own_runtime_overhead(session: Session) -> None:
    """Tensors are the same on every card; only the runtime's overhead differs: Metal has no
    CUDA-style context, ROCm and Level Zero carry the CUDA figure as a flagged stand-in."""
    arch = arch_of(session, "llama-2-7b")
    cards = [card(48, vendor.value, vendor) for vendor in Vendor]
    options = {o.card.vendor: o for o in plan(arch, [inference(seq=4096)], cards).options}
    tensors = estimate(arch, inference(seq=4096).workload).tensor_bytes
    reserve = math.ceil(tensors * ALLOCATOR_RESERVE_FRACTION)
    assert {v: o.tensor_bytes for v, o in options.items()} == dict.fromkeys(Vendor, tensors)
    assert options[Vendor.nvidia].overhead_bytes == CUDA_CONTEXT_BYTES + reserve
    assert options[Vendor.apple].overhead_bytes == reserve  # no context
    assert options[Vendor.amd].overhead_bytes == CUDA_CONTEXT_BYTES + reserve
    assert options[Vendor.intel].overhead_bytes == CUDA_CONTEXT_BYTES + reserve
    assert not OVERHEAD_BY_VENDOR[Vendor.amd].measured
    assert not OVERHEAD_BY_VENDOR[Vendor.intel].measured
    assert OVERHEAD_BY_VENDOR[Vendor.nvidia].measured and METAL_OVERHEAD.measured


def test_the_breakdown_uses_the_cards_runtime(session: Session) -> None:
    """One runtime among the cards: the by-term table is charged it; mixed: CUDA's."""
    arch = arch_of(session, "llama-2-7b")
    mac = plan(arch, [inference()], [card(48, "mac", Vendor.apple)], count=1)
    assert mac.breakdown_overhead is METAL_OVERHEAD
    assert mac.breakdowns[0].per_gpu_bytes == mac.options[0].per_gpu_bytes
    mixed = plan(arch, [inference()], [card(48, "mac", Vendor.apple), card(48)])
    assert mixed.breakdown_overhead is OVERHEAD_BY_VENDOR[Vendor.nvidia]


def test_a_card_that_fits_exactly_has_no_headroom(session: Session) -> None:
    """Capacity equal to the need fits with 0 headroom and 100 % use; one byte less does not."""
    arch = arch_of(session, "llama-3.2-1b")
    need = estimate(arch, inference().workload).per_gpu_bytes
    exact = Card(
        slug="x", name="x", vendor=Vendor.nvidia, market=Market.datacenter, memory_bytes=need
    )
    (option,) = plan(arch, [inference()], [exact], max_gpus=1).options
    assert option.fits and option.headroom_bytes == 0 and option.used_fraction == 1.0
    short = Card(
        slug="y", name="y", vendor=Vendor.nvidia, market=Market.datacenter, memory_bytes=need - 1
    )
    (missed,) = plan(arch, [inference()], [short], max_gpus=1).options
    assert not missed.fits and missed.headroom_bytes == -1


@pytest.fixture(scope="module")
def llama_13b() -> Architecture:
    """Read once for the property tests (hypothesis reruns a test, not its fixtures)."""
    opened = open_catalog("sqlite://")
    try:
        with opened.session() as s:
            return arch_of(s, "llama-2-13b")
    finally:
        opened.close()


@settings(max_examples=25, deadline=None)
@given(small=st.integers(8, 200), extra=st.integers(0, 200))
def test_more_memory_never_needs_more_cards(
    llama_13b: Architecture, small: int, extra: int
) -> None:
    arch = llama_13b
    levels = [inference(seq=4096)]
    a, b = plan(arch, levels, [card(small, "a"), card(small + extra, "b")]).options
    if a.count is not None:
        assert b.count is not None and b.count <= a.count
        assert b.max_context is not None and a.max_context is not None
        assert b.max_context >= a.max_context


def test_fewer_bits_never_need_more_cards(session: Session) -> None:
    arch = arch_of(session, "llama-2-70b")
    levels = bf16_and_int4()
    for memory in (16, 24, 48, 80):
        bf16, int4 = plan(arch, levels, [card(memory)]).options
        if bf16.count is not None:
            assert int4.count is not None and int4.count <= bf16.count


def test_which_models_climbs_down_to_the_first_level_that_fits(session: Session) -> None:
    arch = arch_of(session, "llama-2-13b")
    levels = bf16_and_int4()
    found = best_level("llama-2-13b", arch, levels, card(24), 1)
    assert found.fits and found.best is not None
    assert found.best.level.label == "int4"
    assert found.fitting_levels == ("int4",)
    none = best_level("llama-2-13b", arch, levels, card(4), 1)
    assert not none.fits and none.closest is not None
    assert none.closest.level.label == "int4" and none.closest.headroom_bytes < 0


def test_which_models_uses_pipeline_parallelism_where_heads_do_not_divide(
    session: Session,
) -> None:
    arch = arch_of(session, "llama-2-13b")  # 40 heads: 3 does not divide them
    found = best_level("llama-2-13b", arch, [inference()], card(24), 3)
    assert found.parallel is Parallel.pp
    assert found.best is not None and found.best.estimate.workload.parallel is Parallel.pp
    assert best_level("llama-2-13b", arch, [inference()], card(24), 2).parallel is Parallel.tp


def test_which_models_reports_why_a_model_was_not_sized(session: Session) -> None:
    arch = arch_of(session, "llama-2-7b")
    found = best_level("llama-2-7b", arch, [inference(seq=32768)], card(80), 1)
    assert not found.fits and found.closest is None
    assert found.reason == "context 32,768 beyond its maximum 4,096"


def test_training_methods_all_listed(session: Session) -> None:
    arch = arch_of(session, "llama-3.2-1b")
    nf4 = WeightFormat(slug="nf4", bits_per_weight=4.5, scope="linear")
    levels = [
        Level(label=m.value, workload=Workload(stage=Stage.finetune, method=m, weight_format=f))
        for m, f in ((Method.full, None), (Method.lora, None), (Method.qlora, nf4))
    ]
    found = best_level("llama-3.2-1b", arch, levels, card(80), 1, all_levels=True)
    assert found.fitting_levels == ("full", "lora", "qlora")
    assert found.best is not None and found.best.level.label == "full"


@given(
    sizes=st.lists(st.integers(0, 10**6), min_size=1, max_size=40),
    step=st.integers(1, 9),
    extra=st.integers(0, 8),
    budget=st.integers(-10, 4 * 10**7),
    start=st.integers(0, 10**6),
)
def test_largest_fitting_with_runs_and_a_known_point_matches_a_linear_scan(
    sizes: list[int], step: int, extra: int, budget: int, start: int
) -> None:
    """With `step` (size constant on each run ending at a multiple) and with a known fitting
    point to start from, the search still finds exactly what scanning every n finds."""
    runs = [sum(sizes[: i + 1]) for i in range(len(sizes))]  # non-decreasing, run by run
    hi = max(1, len(runs) * step - extra % step)  # the last run may end short of a multiple

    def size(n: int) -> int:
        return runs[-(-n // step) - 1]

    expected = max((n for n in range(1, hi + 1) if size(n) <= budget), default=None)
    assert largest_fitting(size, 1, hi, budget, step=step) == expected
    fitting = [n for n in range(1, hi + 1) if size(n) <= budget]
    if fitting:
        known = fitting[start % len(fitting)]
        assert largest_fitting(size, 1, hi, budget, known=(known, size(known))) == expected
        assert (
            largest_fitting(size, 1, hi, budget, known=(known, size(known)), step=step) == expected
        )


def test_llama_cpp_needs_one_size_per_run_of_padded_contexts(session: Session) -> None:
    """What `step` assumes of the estimator: under llama.cpp at batch 1, every context in a run
    of LLAMA_CPP_CTX_PAD ending at a multiple needs the bytes of the multiple."""
    from advisor.enums import Engine
    from advisor.estimator import LLAMA_CPP_CTX_PAD
    from advisor.workload import Serving

    q4 = WeightFormat(slug="q4_k_m", bits_per_weight=4.89, scope="all", kind=None)
    for name in ("llama-2-7b", "qwen2.5-7b", "mixtral-8x7b"):
        arch = arch_of(session, name)
        for fmt in (None, q4):
            w = Workload(
                stage=Stage.inference,
                batch=1,
                seq=LLAMA_CPP_CTX_PAD,
                weight_format=fmt,
                serving=Serving(engine=Engine.llama_cpp),
            )
            for multiple in (LLAMA_CPP_CTX_PAD, 8 * LLAMA_CPP_CTX_PAD, 4096):
                sizes = {
                    estimate(arch, dataclasses.replace(w, seq=n)).per_gpu_bytes
                    for n in (multiple - LLAMA_CPP_CTX_PAD + 1, multiple - 7, multiple)
                }
                assert len(sizes) == 1, (name, fmt, multiple)


@pytest.fixture(scope="module")
def bundled_ladder() -> tuple[dict[str, Architecture], dict[str, WeightFormat]]:
    """Every bundled model's architecture and the ladder's formats, read once."""
    from advisor.policy import WHICH_MODELS_LADDER
    from catalog.bundled import load

    data = load()
    archs = {row.slug: row.architecture() for row in data.models}
    formats = {
        q.slug: WeightFormat(
            slug=q.slug, bits_per_weight=q.bits_per_weight, scope=q.scope.value, kind=q.kind
        )
        for q in data.quants
        if q.slug in WHICH_MODELS_LADDER
    }
    assert set(formats) == set(WHICH_MODELS_LADDER)
    return archs, formats


def _ladder_needs(
    arch: Architecture, request: object, formats: dict[str, WeightFormat], gpus: int
) -> dict[str, list[int]]:
    """Each vendor runtime's need per card at each level of the which-models ladder."""
    from advisor.policy import WHICH_MODELS_LADDER, Request, build_levels

    assert isinstance(request, Request)
    levels = build_levels(arch, request, formats, default_quants=WHICH_MODELS_LADDER)
    return {
        vendor.value: [
            estimate(
                arch, dataclasses.replace(lv.workload, gpus=gpus), overhead=overhead
            ).per_gpu_bytes
            for lv in levels
        ]
        for vendor, overhead in OVERHEAD_BY_VENDOR.items()
    }


def test_the_ladder_needs_no_more_bytes_level_after_level_on_every_model(
    bundled_ladder: tuple[dict[str, Architecture], dict[str, WeightFormat]],
) -> None:
    """What `best_level(ladder=True)` bisects on: on every bundled model at its default
    context, each level after the first needs no more than the one before, on every runtime."""
    from advisor.policy import Request

    archs, formats = bundled_ladder
    for name, arch in archs.items():
        for vendor, needs in _ladder_needs(arch, Request(), formats, 1).items():
            after_first = needs[1:]
            assert after_first == sorted(after_first, reverse=True), (name, vendor, needs)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_ladder_needs_no_more_bytes_whatever_the_workload(
    bundled_ladder: tuple[dict[str, Architecture], dict[str, WeightFormat]], data: st.DataObject
) -> None:
    """The same at any context, batch, KV dtype, engine and tensor-parallel count."""
    from advisor.enums import Engine
    from advisor.estimator import valid_tp_counts
    from advisor.policy import Request
    from advisor.workload import KVDtype

    archs, formats = bundled_ladder
    arch = archs[data.draw(st.sampled_from(sorted(archs)))]
    engine = data.draw(st.sampled_from([None, Engine.llama_cpp]))
    request = Request(
        seq=data.draw(st.integers(1, arch.max_position_embeddings)),
        batch=data.draw(st.integers(1, 8)),
        kv_dtype=data.draw(st.sampled_from([None, KVDtype.q8_0, KVDtype.q4_0])),
        engine=engine,
    )
    gpus = data.draw(st.sampled_from(valid_tp_counts(arch, limit=8)))
    for vendor, needs in _ladder_needs(arch, request, formats, gpus).items():
        after_first = needs[1:]
        assert after_first == sorted(after_first, reverse=True), (vendor, needs)


@pytest.mark.parametrize("memory_gib", [6, 12, 24, 48, 80])
def test_bisecting_the_ladder_answers_as_walking_it(
    bundled_ladder: tuple[dict[str, Architecture], dict[str, WeightFormat]], memory_gib: int
) -> None:
    """`ladder=True` finds the same level, option and offload split as the walk, on every
    bundled model."""
    from advisor.policy import WHICH_MODELS_LADDER, Request, build_levels

    archs, formats = bundled_ladder
    consumer = card(memory_gib, market=Market.consumer)
    for name, arch in archs.items():
        levels = build_levels(arch, Request(), formats, default_quants=WHICH_MODELS_LADDER)
        walked = best_level(name, arch, levels, consumer, 1)
        bisected = best_level(name, arch, levels, consumer, 1, ladder=True)
        assert bisected == walked, name


def test_best_choices_merge_an_option_chosen_for_several_reasons(session: Session) -> None:
    """One card that is the fewest, the cheapest and the roomiest is one choice with three
    reasons; with a cheaper card that needs more cards, the cheapest is that one; none fit:
    no choice."""
    from advisor.fit import best_choices

    arch = arch_of(session, "llama-2-13b")
    big = dataclasses.replace(card(80, "big"), price_per_hour=3.0)
    (only,) = best_choices(plan(arch, [inference()], [big]).options)
    assert only.reasons == ("fewest cards", "cheapest", "most headroom")
    small = dataclasses.replace(card(24, "small"), price_per_hour=0.5)
    unpriced = card(48, "unpriced")
    choices = best_choices(plan(arch, [inference()], [big, small, unpriced]).options)
    picked = {reason: c.option for c in choices for reason in c.reasons}
    assert picked["fewest cards"].card.slug == "big" and picked["fewest cards"].count == 1
    assert picked["cheapest"].card.slug == "small" and picked["cheapest"].count == 2
    assert picked["cheapest"].price_per_hour == 1.0
    assert picked["most headroom"].card.slug == "big"
    assert best_choices(plan(arch, [inference()], [card(4)], max_gpus=1).options) == ()
