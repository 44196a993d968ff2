"""Only card counts that can be built: one device on laptops and Apple silicon, a machine's
worth over PCIe on consumer and workstation cards, whole 8-card nodes beyond one datacenter
machine (`advisor.fit.Card.buildable`, the catalog's combine fields)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session

from advisor.cli.options import card_of
from advisor.enums import LinkKind, Market, Vendor
from advisor.errors import InvalidValueError
from advisor.fit import Card, check_buildable, plan
from advisor.policy import TOPOLOGY_BY_MARKET, Level
from advisor.workload import Method, Stage, Workload
from catalog import queries
from catalog.reader import SessionReader
from support import Run

# The most cards the walk tries: four datacenter nodes.
WALK_LIMIT = 32


def _all_cards(session: Session) -> list[Card]:
    reader = SessionReader(session)
    return [card_of(row) for row in reader.gpus()]


def test_every_bundled_card_fills_the_combine_fields(session: Session) -> None:
    """Every bundled card states how it combines; laptops and unified-memory machines are one
    device, and only datacenter machines join."""
    rows = queries.list_gpus(session)
    assert rows
    for row in rows:
        assert row.max_per_node is not None and row.link is not None, row.slug
        assert row.multi_node is not None, row.slug
        if row.market in (Market.laptop, Market.unified_memory):
            assert (row.max_per_node, row.link) in ((1, LinkKind.none), (1, LinkKind.ethernet))
        if row.market == Market.consumer:
            assert 2 <= row.max_per_node <= 4 and not row.multi_node, row.slug
        if row.market == Market.workstation:
            assert 4 <= row.max_per_node <= 8 and not row.multi_node, row.slug
        if row.market == Market.datacenter:
            assert row.multi_node, row.slug
    assert {r.slug for r in rows if r.multi_node and r.market != Market.datacenter} == set()


def test_no_plan_offers_a_count_that_cannot_be_built(session: Session) -> None:
    """Walk every card of every market: a full fine-tune of a 65B model on up to 32 cards
    offers only counts within one machine, or whole machines where they join."""
    arch = queries.get_model(session, name="llama-65b").architecture()
    level = Level(label="full", workload=Workload(stage=Stage.finetune, method=Method.full))
    cards = _all_cards(session)
    assert {c.market for c in cards} == set(Market)
    result = plan(arch, [level], cards, max_gpus=WALK_LIMIT)
    for option in result.options:
        card = option.card
        if option.count is None:
            continue
        assert card.buildable(option.count), (card.slug, option.count)
        if card.market in (Market.laptop, Market.unified_memory):
            assert option.count == 1, card.slug
        elif option.count > card.per_node:
            assert card.multi_node and option.count % card.per_node == 0
            assert option.layout == f"{option.count // card.per_node} nodes x {card.per_node}"
    offered = {o.card.slug: o.count for o in result.options}
    assert offered["rtx5090-laptop"] is None and offered["m3-ultra-512gb"] is None
    assert offered["h100-sxm5-80gb"] == 32  # 4 nodes x 8, not 26
    assert offered["h200-sxm"] == 6  # within one machine
    assert offered["gh200-96gb"] == 14  # 7 nodes x 2 (GH200 NVL2)


@pytest.mark.parametrize("market", list(Market))
def test_each_market_rule(market: Market) -> None:
    """A card without catalog combine fields takes its market's rule."""
    card = Card(slug="c", name="c", vendor=Vendor.nvidia, market=market, memory_bytes=1)
    rule = TOPOLOGY_BY_MARKET[market]
    assert (card.per_node, card.link, card.multi_node) == (
        rule.max_per_node,
        rule.link,
        rule.multi_node,
    )
    within = [n for n in range(1, WALK_LIMIT + 1) if card.buildable(n)]
    expected = list(range(1, rule.max_per_node + 1))
    if rule.multi_node:
        expected += list(range(2 * rule.max_per_node, WALK_LIMIT + 1, rule.max_per_node))
    assert within == expected


def test_refusal_names_what_can_be_built(session: Session) -> None:
    """The refusal says what one machine takes."""
    reader = SessionReader(session)
    laptop = card_of(reader.gpu("rtx4090-laptop"))
    with pytest.raises(InvalidValueError) as error:
        check_buildable(laptop, 2)
    assert str(error.value) == "2 x rtx4090-laptop cannot be built: one device per machine (laptop)"
    h100 = card_of(reader.gpu("h100-sxm5-80gb"))
    with pytest.raises(InvalidValueError) as error:
        check_buildable(h100, 12)
    assert str(error.value) == (
        "12 x h100-sxm5-80gb cannot be built: up to 8 per machine, or whole machines of 8"
    )
    rtx = card_of(reader.gpu("rtx4090"))
    with pytest.raises(InvalidValueError) as error:
        check_buildable(rtx, 5)
    assert str(error.value) == (
        "5 x rtx4090 cannot be built: up to 4 per machine (consumer), machines not joined"
    )


def test_which_models_refuses_a_count_the_card_cannot_reach(run: Run, ready_catalog: Path) -> None:
    """One line on stderr, exit 2, nothing on stdout."""
    result = run("which-models", "--gpu", "m4-max-64gb", "--count", "2")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: 2 x m4-max-64gb cannot be built: one device per machine (unified-memory)\n"
    )


def test_fit_with_gpu_and_count_refuses_an_unbuildable_count(run: Run, ready_catalog: Path) -> None:
    result = run("fit", "--model", "llama-2-7b", "--gpu", "rtx4060-laptop", "--count", "2")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: 2 x rtx4060-laptop cannot be built: one device per machine (laptop)\n"
    )


def test_fit_json_says_nodes_and_pcie(run: Run, ready_catalog: Path) -> None:
    """Across nodes the JSON names the machines; PCIe splits are marked."""
    result = run(
        "fit",
        "--model",
        "llama-65b",
        "--stage",
        "finetune",
        "--method",
        "full",
        "--gpu",
        "h100-sxm5-80gb",
        "--gpu",
        "rtx4090",
        "--max-gpus",
        "32",
        "--recipe",
        "none",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    options = {o["gpu"]: o for o in json.loads(result.stdout)["options"]}
    h100 = options["h100-sxm5-80gb"]
    assert (h100["count"], h100["nodes"], h100["per_node"], h100["link"]) == (32, 4, 8, "nvlink")
    assert options["rtx4090"]["count"] is None and options["rtx4090"]["per_node"] == 4


@pytest.mark.parametrize(
    ("gpu", "header"),
    [
        ("rtx4060-laptop", "(8.00 GiB each), up to 1 card:"),
        ("rtx4090", "(24.00 GiB each), up to 4 cards:"),
        ("h100", "(80.00 GiB each), up to 8 cards:"),
    ],
)
def test_one_card_view_names_the_most_that_can_be_built(
    run: Run, ready_catalog: Path, gpu: str, header: str
) -> None:
    """`fit --gpu X` says how many of X it tried: never more than one machine of that card
    takes (a laptop GPU is one device), nor more than --max-gpus."""
    result = run("fit", "--model", "llama-3.1-8b", "--quant", "q4_k_m", "--gpu", gpu)
    assert result.exit_code == 0, result.stderr
    assert any(line.endswith(header) for line in result.stdout.splitlines())
