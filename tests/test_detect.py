"""Local accelerator detection: recorded NVML, sysctl and amdsmi answers replayed through the
probes (the vendor call is the boundary), matched to the bundled catalog's cards."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from advisor.cli.probe import detect, probe_amd, probe_apple, probe_nvidia
from advisor.detect import (
    Accelerator,
    Detection,
    KnownCard,
    local_cards,
    match_card,
    name_key,
)
from advisor.enums import Vendor
from support import Run

MIB = 2**20
GPUS = Path(__file__).resolve().parents[1] / "catalog" / "data" / "gpus"


def bundled_cards() -> list[KnownCard]:
    """The bundled GPU rows as matching sees them (slug, name and aliases as keys)."""
    cards = []
    for path in sorted(GPUS.glob("*.json")):
        data = json.loads(path.read_text())
        for row in data["gpus"] if isinstance(data, dict) else data:
            cards.append(
                KnownCard(
                    slug=row["slug"],
                    name=row["name"],
                    vendor=Vendor(row["vendor"]),
                    memory_bytes=row["memory_bytes"],
                    usable_fraction=row.get("usable_memory_fraction") or 1.0,
                    keys=frozenset(
                        name_key(n) for n in [row["slug"], row["name"], *row.get("aliases", [])]
                    ),
                )
            )
    return cards


@dataclass
class Memory:
    total: int
    free: int
    used: int


class RecordedNVML:
    """NVML's answers on a machine with two H100 80GB HBM3 joined by 18 NVLink links each
    (totals and names as nvidia-smi shows them), replayed under pynvml's function names."""

    NVML_FEATURE_ENABLED = 1

    class NVMLError(Exception):
        pass

    def __init__(self, names: list[str], total_mib: int, links: int) -> None:
        self.names, self.total, self.links = names, total_mib * MIB, links
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self.names[handle]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Memory:
        return Memory(total=self.total, free=self.total - 512 * MIB, used=512 * MIB)

    def nvmlDeviceGetNvLinkState(self, handle: int, link: int) -> int:
        if link >= self.links:
            raise self.NVMLError("Not Supported")
        return self.NVML_FEATURE_ENABLED


def test_nvml_answers_become_accelerators() -> None:
    """Name, total, free and NVLink links per device; NVML is shut down after."""
    nvml = RecordedNVML(["NVIDIA H100 80GB HBM3"] * 2, total_mib=81559, links=18)
    found = probe_nvidia(nvml)
    assert (
        found
        == [
            Accelerator(
                vendor=Vendor.nvidia,
                name="NVIDIA H100 80GB HBM3",
                memory_bytes=81559 * MIB,
                free_bytes=81047 * MIB,
                nvlink_links=18,
            )
        ]
        * 2
    )
    assert nvml.calls == ["init", "shutdown"]


@pytest.mark.parametrize(
    ("name", "total_mib", "slug"),
    [
        ("NVIDIA GeForce RTX 4090", 24564, "rtx4090"),
        ("NVIDIA GeForce RTX 4060", 8188, "rtx4060"),
        ("NVIDIA GeForce RTX 4060 Ti", 16380, "rtx4060ti-16gb"),
        ("NVIDIA A100-SXM4-80GB", 81920, "a100-sxm4-80gb"),
        ("NVIDIA A100-PCIE-40GB", 40960, "a100-pcie-40gb"),
        ("NVIDIA H200", 143771, "h200-sxm"),
    ],
)
def test_nvidia_names_match_catalog_rows(name: str, total_mib: int, slug: str) -> None:
    """Reported names and totals (a little under nominal) find their catalog card."""
    acc = Accelerator(vendor=Vendor.nvidia, name=name, memory_bytes=total_mib * MIB)
    card = match_card(acc, bundled_cards())
    assert card is not None and card.slug == slug


def sysctl_of(answers: dict[str, str]) -> Any:
    return answers.get


def test_apple_silicon_with_default_and_raised_limit() -> None:
    """An M2 Max with 96 GB: matched to its row, whose default GPU share applies; a raised
    iogpu.wired_limit_mb replaces it."""
    answers = {"machdep.cpu.brand_string": "Apple M2 Max", "hw.memsize": str(96 * 2**30)}
    found = probe_apple(sysctl_of({**answers, "iogpu.wired_limit_mb": "0"}))
    [card] = local_cards(
        Detection(accelerators=tuple(found), system_memory_bytes=None), bundled_cards()
    )
    assert (card.slug, card.count, card.usable_fraction) == ("m2-max-96gb", 1, 0.75)
    assert card.capacity_bytes == 72 * 2**30
    raised = probe_apple(sysctl_of({**answers, "iogpu.wired_limit_mb": str(88 * 1024)}))
    [card] = local_cards(
        Detection(accelerators=tuple(raised), system_memory_bytes=None), bundled_cards()
    )
    assert card.capacity_bytes == 88 * 2**30


def test_unknown_card_is_ad_hoc() -> None:
    """A device no row matches keeps its reported name and memory."""
    acc = Accelerator(vendor=Vendor.nvidia, name="NVIDIA Future X9", memory_bytes=300 * 2**30)
    detection = Detection(accelerators=(acc, acc), system_memory_bytes=None)
    [card] = local_cards(detection, bundled_cards())
    assert (card.match, card.slug, card.name, card.count) == (
        None,
        "local-futurex9",
        "NVIDIA Future X9",
        2,
    )
    assert card.capacity_bytes == 300 * 2**30
    m9 = Accelerator(vendor=Vendor.apple, name="Apple M9", memory_bytes=16 * 2**30)
    [apple] = local_cards(Detection(accelerators=(m9,), system_memory_bytes=None), [])
    assert apple.capacity_bytes == 16 * 2**30 * 2 // 3


class RecordedAmdSmi:
    """amdsmi's answers for one MI300X (VRAM in MB)."""

    class AmdSmiException(Exception):
        pass

    def amdsmi_init(self) -> None:
        pass

    def amdsmi_shut_down(self) -> None:
        pass

    def amdsmi_get_processor_handles(self) -> list[int]:
        return [0]

    def amdsmi_get_gpu_asic_info(self, handle: int) -> dict[str, str]:
        return {"market_name": "AMD Instinct MI300X"}

    def amdsmi_get_gpu_vram_usage(self, handle: int) -> dict[str, int]:
        return {"vram_total": 196592, "vram_used": 283}


def test_amdsmi_answers() -> None:
    """amdsmi's MB are MiB; free is total minus used."""
    [acc] = probe_amd(RecordedAmdSmi())
    assert (acc.name, acc.memory_bytes, acc.free_bytes) == (
        "AMD Instinct MI300X",
        196592 * MIB,
        (196592 - 283) * MIB,
    )


def test_missing_vendor_library_says_what_to_install(tmp_path: Path) -> None:
    """No pynvml: detection says which package to install, and finds nothing."""
    found = detect(platform="linux", load=lambda name: None, amd_device=tmp_path / "kfd")
    assert found.accelerators == ()
    assert found.notes == (
        "NVIDIA cards are not looked for: pip install 'gpu-fit-advisor[detect]' (nvidia-ml-py)",
    )
    assert found.system_memory_bytes is not None and found.system_memory_bytes > 0
    (tmp_path / "kfd").touch()
    amd = detect(
        platform="linux",
        load=lambda name: RecordedAmdSmi() if name == "amdsmi" else None,
        amd_device=tmp_path / "kfd",
    )
    assert [a.name for a in amd.accelerators] == ["AMD Instinct MI300X"]


def test_macos_asks_sysctl_only() -> None:
    """On macOS no vendor library is loaded; RAM comes from hw.memsize."""
    answers = {"machdep.cpu.brand_string": "Apple M4 Max", "hw.memsize": str(128 * 2**30)}

    def refuse(name: str) -> None:
        raise AssertionError(f"loaded {name}")

    found = detect(platform="darwin", load=refuse, sysctl=sysctl_of(answers))
    assert found.system_memory_bytes == 128 * 2**30
    assert [a.name for a in found.accelerators] == ["Apple M4 Max"]


def test_size_variants_make_a_name_ambiguous() -> None:
    """'a100', 'm2 max' and '4060 ti' name cards of several sizes; 'rtx 4090' names one."""
    from catalog.ambiguity import size_variants

    pairs = [(key, card.slug) for card in bundled_cards() for key in card.keys]
    assert size_variants(name_key("a100"), pairs) == ["a100-sxm4-40gb", "a100-sxm4-80gb"]
    assert size_variants(name_key("M2 Max"), pairs) == ["m2-max-32gb", "m2-max-64gb", "m2-max-96gb"]
    assert size_variants(name_key("4060ti"), pairs) == ["rtx4060ti-16gb", "rtx4060ti-8gb"]
    assert size_variants(name_key("RTX 4090"), pairs) == ["rtx4090"]
    assert size_variants(name_key("A100 80GB"), pairs) == ["a100-sxm4-80gb"]


# --- the commands, with NVML's recorded answers in place of the library ----------------------


@pytest.fixture
def two_h100(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RecordedNVML:
    """This machine, as far as the probes know, is Linux with two H100 80GB HBM3 (NVLink)."""
    import sys

    nvml = RecordedNVML(["NVIDIA H100 80GB HBM3"] * 2, total_mib=81559, links=18)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(sys, "platform", "linux")
    return nvml


def test_detect_command_json(run: Run, ready_catalog: Path, two_h100: RecordedNVML) -> None:
    """`advisor detect --json`: the two cards grouped and matched to the catalog's H100 SXM."""
    result = run("detect", "--json")
    assert result.exit_code == 0, result.stderr
    [card] = json.loads(result.stdout)["accelerators"]
    assert card == {
        "vendor": "nvidia",
        "name": "NVIDIA H100 80GB HBM3",
        "count": 2,
        "memory_bytes": 81559 * MIB,
        "free_bytes": 81047 * MIB,
        "capacity_bytes": 81559 * MIB,
        "nvlink_links": 18,
        "catalog_gpu": "h100-sxm5-80gb",
        "card": "h100-sxm5-80gb",
    }


def test_which_models_and_fit_use_the_detected_cards(
    run: Run, ready_catalog: Path, two_h100: RecordedNVML
) -> None:
    """Without --gpu, which-models sizes for the two detected cards and says so; `fit --gpu
    local` checks exactly them."""
    text = run("which-models", "--family", "llama-2")
    assert text.exit_code == 0, text.stderr
    assert text.stdout.startswith(
        "Detected this machine's cards: 2 x NVIDIA H100 80GB HBM3 (catalog: h100-sxm5-80gb)\n"
    )
    listed = run("which-models", "--family", "llama-2", "--json")
    assert (json.loads(listed.stdout)["gpu"], json.loads(listed.stdout)["count"]) == (
        "h100-sxm5-80gb",
        2,
    )
    fit = run("fit", "--model", "llama-2-70b", "--gpu", "local", "--json")
    assert fit.exit_code == 0, fit.stderr
    assert "h100-sxm5-80gb" in fit.stdout


def test_no_accelerator_asks_for_gpu(
    run: Run, ready_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No vendor library and no device: which-models says to install it or pass --gpu."""
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # importing it raises ImportError
    monkeypatch.setattr(sys, "platform", "linux")
    result = run("which-models")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(
        "error: no accelerator detected on this machine; pass --gpu NAME (see advisor catalog "
        "gpus) (NVIDIA cards are not looked for: pip install 'gpu-fit-advisor[detect]' "
        "(nvidia-ml-py)"
    )
