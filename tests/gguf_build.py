"""Small real GGUF files for tests, written with llama.cpp's own `gguf` package.

`python tests/gguf_build.py tests/data/toy-llama.gguf` writes the file the README's GGUF
example reads (tests/test_gguf_cli.py checks the committed copy is what this writes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

# A tiny Llama: 2 layers, width 64, 4 query heads of 16, 2 KV heads, MLP 128, 256 tokens.
LAYERS, HIDDEN, HEADS, KV_HEADS, FFN, VOCAB, CONTEXT = 2, 64, 4, 2, 128, 256, 4096


def _add(writer: GGUFWriter, name: str, shape: tuple[int, ...], kind: GGMLQuantizationType) -> int:
    """Add a tensor of `shape` (numpy order: rows last is ne[0]) in `kind`; its bytes."""
    values = np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    if kind is GGMLQuantizationType.F32:
        writer.add_tensor(name, values)
        return values.nbytes
    data = quantize(values, kind)
    writer.add_tensor(name, data, raw_dtype=kind)
    return int(data.nbytes)


def write_llama(
    path: Path, *, arch: str = "llama", tied: bool = False, sliding_window: int | None = None
) -> int:
    """A tiny Llama-style GGUF file (Q8_0 matrices, F32 norms); the bytes of its tensors."""
    writer = GGUFWriter(str(path), arch)
    writer.add_name("toy-llama-gguf")
    writer.add_block_count(LAYERS)
    writer.add_embedding_length(HIDDEN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_feed_forward_length(FFN)
    writer.add_context_length(CONTEXT)
    writer.add_key_length(HIDDEN // HEADS)
    writer.add_value_length(HIDDEN // HEADS)
    if sliding_window is not None:
        writer.add_sliding_window(sliding_window)
    q8 = GGMLQuantizationType.Q8_0
    f32 = GGMLQuantizationType.F32
    kv = KV_HEADS * HIDDEN // HEADS
    total = _add(writer, "token_embd.weight", (VOCAB, HIDDEN), q8)
    for i in range(LAYERS):
        p = f"blk.{i}."
        total += _add(writer, p + "attn_norm.weight", (HIDDEN,), f32)
        total += _add(writer, p + "attn_q.weight", (HIDDEN, HIDDEN), q8)
        total += _add(writer, p + "attn_k.weight", (kv, HIDDEN), q8)
        total += _add(writer, p + "attn_v.weight", (kv, HIDDEN), q8)
        total += _add(writer, p + "attn_output.weight", (HIDDEN, HIDDEN), q8)
        total += _add(writer, p + "ffn_norm.weight", (HIDDEN,), f32)
        total += _add(writer, p + "ffn_gate.weight", (FFN, HIDDEN), q8)
        total += _add(writer, p + "ffn_up.weight", (FFN, HIDDEN), q8)
        total += _add(writer, p + "ffn_down.weight", (HIDDEN, FFN), q8)
    total += _add(writer, "output_norm.weight", (HIDDEN,), f32)
    if not tied:
        total += _add(writer, "output.weight", (VOCAB, HIDDEN), q8)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return total


if __name__ == "__main__":
    write_llama(Path(sys.argv[1]))
