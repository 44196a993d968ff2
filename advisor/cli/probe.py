"""The vendor calls behind `advisor detect` and `--gpu local`: NVML, sysctl, amdsmi, system RAM.

This is the boundary with the machine: each probe takes the vendor library (or the sysctl
reader) as an argument, so tests replay recorded answers through the same code. What the
probes find goes to the pure `advisor.detect`.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.detect import MIB, Accelerator, Detection
from advisor.enums import Vendor

Sysctl = Callable[[str], str | None]
INSTALL_NVML = "pip install 'gpu-fit-advisor[detect]' (nvidia-ml-py)"
INSTALL_AMDSMI = "install amdsmi (it ships with ROCm: pip install amdsmi against ROCm's library)"
# amdsmi reports VRAM in MB (amdsmi_get_gpu_vram_usage: vram_total, vram_used), meaning MiB.
AMDSMI_VRAM_UNIT = MIB
# NVML's largest number of NVLink links per device (nvml.h NVML_NVLINK_MAX_LINKS, 18 on Hopper).
NVML_NVLINK_MAX_LINKS = 18
# How long sysctl may take before the probe gives up, in seconds.
SYSCTL_TIMEOUT_S = 5


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvidia(nvml: Any) -> list[Accelerator]:
    """Every NVIDIA device NVML lists: name, memory total and free, active NVLink links."""
    nvml.nvmlInit()
    try:
        found = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            links = 0
            for link in range(NVML_NVLINK_MAX_LINKS):
                try:
                    active = nvml.nvmlDeviceGetNvLinkState(handle, link)
                except nvml.NVMLError:  # no such link, or NVLink not supported
                    break
                links += active == nvml.NVML_FEATURE_ENABLED
            found.append(
                Accelerator(
                    vendor=Vendor.nvidia,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_bytes=int(memory.total),
                    free_bytes=int(memory.free),
                    nvlink_links=links,
                )
            )
        return found
    finally:
        nvml.nvmlShutdown()


def probe_apple(sysctl: Sysctl) -> list[Accelerator]:
    """Apple silicon: the chip, its unified memory, and the GPU wired limit if one is set."""
    brand = sysctl("machdep.cpu.brand_string") or ""
    memsize = sysctl("hw.memsize")
    if not brand.startswith("Apple") or not memsize:
        return []
    limit = sysctl("iogpu.wired_limit_mb")
    limit_mib = int(limit) if limit and limit.strip().isdigit() else 0
    return [
        Accelerator(
            vendor=Vendor.apple,
            name=brand.strip(),
            memory_bytes=int(memsize),
            gpu_limit_bytes=limit_mib * MIB if limit_mib else None,
        )
    ]


def probe_amd(amdsmi: Any) -> list[Accelerator]:
    """AMD GPUs through amdsmi: market name, VRAM total and free."""
    amdsmi.amdsmi_init()
    try:
        found = []
        for handle in amdsmi.amdsmi_get_processor_handles():
            asic = amdsmi.amdsmi_get_gpu_asic_info(handle)
            vram = amdsmi.amdsmi_get_gpu_vram_usage(handle)
            total = int(vram["vram_total"]) * AMDSMI_VRAM_UNIT
            found.append(
                Accelerator(
                    vendor=Vendor.amd,
                    name=str(asic["market_name"]),
                    memory_bytes=total,
                    free_bytes=total - int(vram["vram_used"]) * AMDSMI_VRAM_UNIT,
                )
            )
        return found
    finally:
        amdsmi.amdsmi_shut_down()


def run_sysctl(name: str) -> str | None:
    """`sysctl -n NAME`, or None where the name does not exist."""
    try:
        done = subprocess.run(
            ["sysctl", "-n", name],
            capture_output=True,
            text=True,
            timeout=SYSCTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def system_memory(platform: str, sysctl: Sysctl) -> int | None:
    """Physical RAM in bytes (for offloading): sysctl on macOS, sysconf elsewhere."""
    if platform == "darwin":
        value = sysctl("hw.memsize")
        return int(value) if value and value.isdigit() else None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _load(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def detect(
    *,
    platform: str = sys.platform,
    load: Callable[[str], Any | None] = _load,
    sysctl: Sysctl = run_sysctl,
    amd_device: Path = Path("/dev/kfd"),
) -> Detection:
    """Ask every vendor library that applies to this platform; say what could not be asked."""
    found: list[Accelerator] = []
    notes: list[str] = []
    if platform == "darwin":
        found += probe_apple(sysctl)
    else:
        nvml = load("pynvml")
        if nvml is None:
            notes.append(f"NVIDIA cards are not looked for: {INSTALL_NVML}")
        else:
            try:
                found += probe_nvidia(nvml)
            except nvml.NVMLError as error:  # no driver, no device
                notes.append(f"NVML found no NVIDIA driver ({_text(error)})")
        if amd_device.exists():
            amdsmi = load("amdsmi")
            if amdsmi is None:
                notes.append(f"AMD GPUs are not looked for: {INSTALL_AMDSMI}")
            else:
                try:
                    found += probe_amd(amdsmi)
                except amdsmi.AmdSmiException as error:
                    notes.append(f"amdsmi could not read the AMD GPUs ({error})")
    return Detection(
        accelerators=tuple(found),
        system_memory_bytes=system_memory(platform, sysctl),
        notes=tuple(notes),
    )
