"""Models by Hugging Face repo id and checkpoint folder: the real huggingface_hub client against a
local server that answers in the Hub's URL layout (loopback only), and folders on disk."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from advisor.arch import architecture_from_hf_config, count_params
from advisor.errors import HubError, InvalidValueError
from advisor.estimator import estimate
from advisor.workload import Stage, Workload
from catalog.hub import (
    HubSettings,
    Quantization,
    looks_like_repo_id,
    quantization_of,
    read_checkpoint,
    read_folder,
    read_hub,
)
from support import Run

# A small Llama: 2 layers, hidden 64, 4 heads (2 KV heads), MLP 128, vocabulary 256.
TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
ELEMENT_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "U8": 1, "F8_E4M3": 1}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_test_token_with_access"


def safetensors(tensors: Mapping[str, tuple[str, list[int]]]) -> bytes:
    """A safetensors file: the 8-byte header length, the JSON header, zeroed tensor data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = ELEMENT_BYTES[dtype]
        for dim in shape:
            n *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def llama_tensors(dtype: str = "BF16") -> dict[str, tuple[str, list[int]]]:
    """Every tensor of TINY_LLAMA as transformers names it."""
    h, inner, vocab, kv = 64, 128, 256, 2 * 16
    tensors = {
        "model.embed_tokens.weight": (dtype, [vocab, h]),
        "lm_head.weight": (dtype, [vocab, h]),
    }
    for i in range(2):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": (dtype, [h, h]),
            p + "self_attn.k_proj.weight": (dtype, [kv, h]),
            p + "self_attn.v_proj.weight": (dtype, [kv, h]),
            p + "self_attn.o_proj.weight": (dtype, [h, h]),
            p + "mlp.gate_proj.weight": (dtype, [inner, h]),
            p + "mlp.up_proj.weight": (dtype, [inner, h]),
            p + "mlp.down_proj.weight": (dtype, [h, inner]),
            p + "input_layernorm.weight": (dtype, [h]),
            p + "post_attention_layernorm.weight": (dtype, [h]),
        }
    tensors["model.norm.weight"] = (dtype, [h])
    return tensors


# TINY_LLAMA's parameters, counted by hand: embeddings and head 2 x 256 x 64; per layer q and o
# 64 x 64 each, k and v 32 x 64 each, three MLP matrices 128 x 64, two norms of 64; final norm.
TINY_PARAMS = 2 * 256 * 64 + 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 128 * 64 + 2 * 64) + 64


def gptq_tensors() -> dict[str, tuple[str, list[int]]]:
    """TINY_LLAMA as a 4-bit GPTQ checkpoint with group size 32: each linear layer's weights
    packed 8 to an int32, a float16 scale and a packed zero per group, its g_idx; the rest
    float16."""
    tensors: dict[str, tuple[str, list[int]]] = {
        "model.embed_tokens.weight": ("F16", [256, 64]),
        "lm_head.weight": ("F16", [256, 64]),
        "model.norm.weight": ("F16", [64]),
    }
    shapes = {"q_proj": (64, 64), "k_proj": (64, 32), "v_proj": (64, 32), "o_proj": (64, 64)}
    mlp = {"gate_proj": (64, 128), "up_proj": (64, 128), "down_proj": (128, 64)}
    for i in range(2):
        for name, (n_in, n_out) in {**shapes, **mlp}.items():
            part = "self_attn" if name in shapes else "mlp"
            p = f"model.layers.{i}.{part}.{name}."
            tensors[p + "qweight"] = ("I32", [n_in // 8, n_out])
            tensors[p + "scales"] = ("F16", [n_in // 32, n_out])
            tensors[p + "qzeros"] = ("I32", [n_in // 32, n_out // 8])
            tensors[p + "g_idx"] = ("I32", [n_in])
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors[f"model.layers.{i}.{norm}.weight"] = ("F16", [64])
    return tensors


def data_bytes(tensors: Mapping[str, tuple[str, list[int]]]) -> int:
    total = 0
    for dtype, shape in tensors.values():
        n = ELEMENT_BYTES[dtype]
        for dim in shape:
            n *= dim
        total += n
    return total


# --- a Hub in the Hub's URL layout ------------------------------------------------------------


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False


@dataclass
class FakeHub:
    """What the local server serves, and what it was asked."""

    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads `hub.requests` instead."""

        def _refuse(self, status: int, code: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            match = _RESOLVE.match(self.path)
            repo = hub.repos.get(match["repo"]) if match else None
            if match is None or repo is None:
                self._refuse(404, "RepoNotFound")
                return
            if repo.gated and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._refuse(401, "GatedRepo")
                return
            if match["rev"] not in ("main", COMMIT) or match["file"] not in repo.files:
                self._refuse(404, "EntryNotFound")
                return
            content = repo.files[match["file"]]
            status, start, end = 200, 0, len(content) - 1
            wanted = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if wanted:
                status, start = 206, int(wanted[1])
                end = min(int(wanted[2]), end) if wanted[2] else end
            self.send_response(status)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", '"' + hashlib.sha256(content).hexdigest() + '"')
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(content)}")
            self.end_headers()
            if body:
                self.wfile.write(content[start : end + 1])

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

    return Handler


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """A Hub on 127.0.0.1 with a plain, a sharded, a GPTQ, a gated and a config-less repo."""
    tensors = llama_tensors()
    names = list(tensors)
    first = {n: tensors[n] for n in names[: len(names) // 2]}
    second = {n: tensors[n] for n in names[len(names) // 2 :]}
    index = {
        "metadata": {"total_size": data_bytes(tensors)},
        "weight_map": {
            **dict.fromkeys(first, "model-00001-of-00002.safetensors"),
            **dict.fromkeys(second, "model-00002-of-00002.safetensors"),
        },
    }
    config = json.dumps(TINY_LLAMA).encode()
    gptq_config = {
        **TINY_LLAMA,
        "torch_dtype": "float16",
        "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 32},
    }
    state = FakeHub()
    state.repos = {
        "acme/tiny-llama": Repo({"config.json": config, "model.safetensors": safetensors(tensors)}),
        "acme/tiny-llama-sharded": Repo(
            {
                "config.json": config,
                "model.safetensors.index.json": json.dumps(index).encode(),
                "model-00001-of-00002.safetensors": safetensors(first),
                "model-00002-of-00002.safetensors": safetensors(second),
            }
        ),
        "acme/tiny-llama-GPTQ": Repo(
            {
                "config.json": json.dumps(gptq_config).encode(),
                "model.safetensors": safetensors(gptq_tensors()),
            }
        ),
        "acme/tiny-llama-FP8-KV": Repo(
            {
                "config.json": json.dumps(
                    {
                        **TINY_LLAMA,
                        "quantization_config": {
                            "quant_method": "compressed-tensors",
                            "kv_cache_scheme": {"num_bits": 8, "type": "float"},
                        },
                    }
                ).encode(),
                "model.safetensors": safetensors(llama_tensors("F8_E4M3")),
            }
        ),
        "acme/gated-llama": Repo({"config.json": config}, gated=True),
        "acme/no-config": Repo({"README.md": b"# nothing here\n"}),
        "acme/tiny-mamba": Repo({"config.json": json.dumps({"model_type": "mamba"}).encode()}),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def settings(
    hub: FakeHub, cache: Path, *, offline: bool = False, token: str | None = None
) -> HubSettings:
    return HubSettings(endpoint=hub.url, cache_dir=cache, offline=offline, token=token)


# --- the Hub ---------------------------------------------------------------------------------


def test_single_file_repo_reads_config_and_header_by_range(hub: FakeHub, tmp_path: Path) -> None:
    """config.json is downloaded; the weights file is read only by range requests."""
    found = read_hub("acme/tiny-llama", settings(hub, tmp_path))
    assert found.revision == COMMIT
    assert found.architecture == architecture_from_hf_config(TINY_LLAMA)
    assert found.weights is not None
    assert found.weights.bytes == TINY_PARAMS * 2
    assert found.weights.elements == TINY_PARAMS == count_params(found.architecture).total
    assert found.weights.files == 1
    assert dict(found.weights.bytes_by_dtype) == {"BF16": TINY_PARAMS * 2}
    assert found.weight_format() is None  # plain bf16: weights follow the precision asked
    weight_gets = [r for r in hub.requests if r[0] == "GET" and r[1].endswith(".safetensors")]
    assert weight_gets and all(r[2] is not None for r in weight_gets)
    assert all(int(r[2].split("-")[1]) <= 100_000 for r in weight_gets if r[2])
    assert found.message() == (
        f"read config.json and the headers of 1 safetensors file of acme/tiny-llama at commit "
        f"{COMMIT[:12]} from the Hub ({hub.url}): 106,816 parameters, 0.00 GiB of weights"
    )
    assert found.source == f"huggingface.co/acme/tiny-llama commit {COMMIT} (config.json)"


def test_sharded_repo_adds_every_shard(hub: FakeHub, tmp_path: Path) -> None:
    """The index names two shards; both headers are read and added up."""
    found = read_hub("acme/tiny-llama-sharded", settings(hub, tmp_path))
    assert found.weights is not None
    assert (found.weights.files, found.weights.bytes) == (2, TINY_PARAMS * 2)
    assert found.weights.tensors == len(llama_tensors())


def test_gptq_checkpoint_bytes_are_exact(hub: FakeHub, tmp_path: Path) -> None:
    """Packed int32 weights, scales, zeros and g_idx add up to the file's data, byte for byte."""
    found = read_hub("acme/tiny-llama-GPTQ", settings(hub, tmp_path))
    assert found.weights is not None
    # 4 bits per weight of the linear layers, plus one fp16 scale and one 4-bit zero per 32
    # weights, plus an int32 g_idx per input row; fp16 embeddings, head and norms.
    linear = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128)
    g_idx = 2 * (4 * 64 + 2 * 64 + 128) * 4
    rest = (2 * 256 * 64 + 64 + 2 * 2 * 64) * 2
    expected = linear // 2 + linear // 32 * 2 + linear // 32 // 2 + g_idx + rest
    assert found.weights.bytes == expected == data_bytes(gptq_tensors())
    assert found.quantization == Quantization(method="gptq", bits=4, group_size=32)
    fmt = found.weight_format()
    assert fmt is not None and (fmt.slug, fmt.exact_bytes) == ("gptq-4bit (checkpoint)", expected)
    workload = Workload(stage=Stage.inference, weight_format=fmt, seq=128)
    terms = {t.name: t.bytes for t in estimate(found.architecture, workload).terms}
    assert terms["weights"] == expected


def test_gated_repo_needs_a_token(hub: FakeHub, tmp_path: Path) -> None:
    """Without HF_TOKEN the gated repo is refused in one line; with it, it is read."""
    with pytest.raises(HubError) as refused:
        read_hub("acme/gated-llama", settings(hub, tmp_path))
    assert str(refused.value) == (
        "acme/gated-llama is gated: accept its licence on the Hub and set HF_TOKEN "
        "(or pass a config.json)"
    )
    assert refused.value.exit_code == 2
    found = read_hub("acme/gated-llama", settings(hub, tmp_path, token=TOKEN))
    assert found.weights is None
    assert found.message().endswith(
        "; no safetensors headers, so weights are sized from the architecture"
    )


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        (
            "acme/missing",
            "acme/missing is not a model repo on the Hub (or it is private: set HF_TOKEN)",
        ),
        ("acme/no-config", "acme/no-config has no config.json on the Hub"),
    ],
)
def test_missing_repo_and_missing_config(
    hub: FakeHub, tmp_path: Path, repo: str, message: str
) -> None:
    """A 404 for the repo and a 404 for config.json are each one line."""
    with pytest.raises(HubError) as refused:
        read_hub(repo, settings(hub, tmp_path))
    assert str(refused.value) == message


def test_unsupported_architecture_names_the_type(hub: FakeHub, tmp_path: Path) -> None:
    """A model_type the estimator does not model is named, with the supported ones."""
    with pytest.raises(InvalidValueError) as refused:
        read_hub("acme/tiny-mamba", settings(hub, tmp_path))
    assert str(refused.value).startswith("model_type 'mamba' is not supported (supported: llama, ")


def test_offline_reads_the_cache_the_client_wrote(hub: FakeHub, tmp_path: Path) -> None:
    """Read once online (the client fills the cache), then offline: no request is made."""
    online = read_hub("acme/tiny-llama-sharded", settings(hub, tmp_path))
    asked = len(hub.requests)
    offline = read_hub("acme/tiny-llama-sharded", settings(hub, tmp_path, offline=True))
    assert len(hub.requests) == asked
    assert offline.architecture == online.architecture
    assert offline.revision == COMMIT
    assert offline.location == f"the local Hugging Face cache ({tmp_path})"
    assert (tmp_path / "models--acme--tiny-llama-sharded" / "snapshots" / COMMIT).is_dir()
    # The shards' headers were read by range request, not cached: offline says so.
    assert offline.weights is None


def test_offline_uses_cached_weight_files(hub: FakeHub, tmp_path: Path) -> None:
    """Shards downloaded by the client are read from the cache's snapshot folder offline."""
    from huggingface_hub import hf_hub_download

    for name in ("config.json", "model.safetensors"):
        hf_hub_download("acme/tiny-llama", name, cache_dir=tmp_path, endpoint=hub.url)
    asked = len(hub.requests)
    found = read_hub("acme/tiny-llama", settings(hub, tmp_path, offline=True))
    assert len(hub.requests) == asked
    assert found.weights is not None and found.weights.bytes == TINY_PARAMS * 2


def test_offline_and_not_cached_is_one_line(hub: FakeHub, tmp_path: Path) -> None:
    """Offline with an empty cache: the message the issue asks for, and no request."""
    with pytest.raises(HubError) as refused:
        read_hub("acme/tiny-llama", settings(hub, tmp_path, offline=True))
    assert str(refused.value) == (
        f"acme/tiny-llama is not in the local Hugging Face cache ({tmp_path}); "
        "run without --offline or pass a config.json"
    )
    assert hub.requests == []


# --- settings from the environment -----------------------------------------------------------


def test_settings_follow_the_clients_precedence(tmp_path: Path) -> None:
    """HF_HUB_CACHE over HF_HOME/hub over XDG_CACHE_HOME; HF_HUB_OFFLINE's truthy spellings."""
    env = {"HF_HOME": str(tmp_path / "home"), "HF_ENDPOINT": "http://127.0.0.1:1/"}
    assert HubSettings.from_env(env) == HubSettings(
        endpoint="http://127.0.0.1:1",
        cache_dir=tmp_path / "home" / "hub",
        offline=False,
        token=None,
    )
    env |= {"HF_HUB_CACHE": str(tmp_path / "c"), "HF_HUB_OFFLINE": "yes", "HF_TOKEN": "t"}
    got = HubSettings.from_env(env)
    assert (got.cache_dir, got.offline, got.token) == (tmp_path / "c", True, "t")
    assert HubSettings.from_env({"XDG_CACHE_HOME": str(tmp_path)}).cache_dir == (
        tmp_path / "huggingface" / "hub"
    )
    assert HubSettings.from_env({}, offline=True).offline is True


# --- a checkpoint folder ---------------------------------------------------------------------


def checkpoint_folder(root: Path, tensors: Mapping[str, tuple[str, list[int]]]) -> Path:
    folder = root / "my-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA))
    (folder / "model.safetensors").write_bytes(safetensors(tensors))
    return folder


def test_folder_reads_headers_without_network(tmp_path: Path) -> None:
    """config.json and the local safetensors header, exactly."""
    folder = checkpoint_folder(tmp_path, llama_tensors("F32"))
    found = read_folder(folder)
    assert found.weights is not None
    assert (found.weights.bytes, found.weights.elements) == (TINY_PARAMS * 4, TINY_PARAMS)
    assert (found.name, found.repo_id, found.revision) == ("my-checkpoint", None, None)
    assert found.message() == (
        "read config.json and the headers of 1 safetensors file of my-checkpoint from the "
        f"folder {folder.resolve()}: 106,816 parameters, 0.00 GiB of weights"
    )
    assert read_checkpoint(str(folder), HubSettings.from_env({})).weights == found.weights


def test_folder_without_config_and_truncated_file(tmp_path: Path) -> None:
    """A folder without config.json, and a shard cut short, are refused in one line."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HubError, match=r"^.*/empty has no config.json$"):
        read_folder(empty)
    folder = checkpoint_folder(tmp_path, llama_tensors())
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(InvalidValueError, match="lies outside the file"):
        read_folder(folder)


def test_repo_id_shape() -> None:
    """owner/name is a repo id; other shapes are not."""
    assert looks_like_repo_id("Qwen/Qwen3-30B-A3B-Instruct-2507")
    assert not looks_like_repo_id("llama-3.1-8b")
    assert not looks_like_repo_id("a/b/c")
    assert not looks_like_repo_id("../x")


def test_quantization_configs() -> None:
    """GPTQ, bitsandbytes, FP8 block scaling and a compressed-tensors FP8 KV cache."""
    assert quantization_of(TINY_LLAMA) is None
    bnb = {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}
    assert quantization_of(bnb) == Quantization(method="bitsandbytes", bits=4)
    fp8 = {"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}
    assert quantization_of(fp8) == Quantization(method="fp8", group_size=128)
    ct = {
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "kv_cache_scheme": {"num_bits": 8, "type": "float"},
        }
    }
    assert quantization_of(ct) == Quantization(method="compressed-tensors", kv_cache_dtype="fp8")


# --- Hub ids of bundled models resolve offline --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("meta-llama/Meta-Llama-3.1-8B", "llama-3.1-8b"),
        ("meta-llama/Llama-2-7b-hf", "llama-2-7b"),
        ("Llama-2-7b-chat-hf", "llama-2-7b"),
        ("Qwen/Qwen3-30B-A3B-Instruct-2507", "qwen3-30b-a3b-2507"),
        ("Qwen/Qwen3-30B-A3B-Base", "qwen3-30b-a3b"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
        ("google/gemma-2-9b-it", "gemma-2-9b"),
        ("EleutherAI/pythia-1.4b-deduped", "pythia-1.4b"),
        ("openai-community/gpt2", "gpt2"),
        ("deepseek-ai/DeepSeek-R1-0528", "deepseek-r1"),
        ("llama3.1:8b", "llama-3.1-8b"),
    ],
)
def test_hub_ids_of_bundled_models_resolve(session: Any, name: str, slug: str) -> None:
    """A bundled model's Hub repo ids (and an Ollama tag) name it, with no network."""
    from catalog import queries

    assert queries.get_model(session, name=name).slug == slug


def test_bundled_hub_aliases_fit_and_do_not_collide() -> None:
    """Every bundled alias fits the 128-character column and names one model only."""
    from catalog.tables import alias_key

    owners: dict[str, str] = {}
    data = Path(__file__).resolve().parents[1] / "catalog" / "data" / "models"
    for path in sorted(data.glob("*.json")):
        for model in json.loads(path.read_text())["models"]:
            for alias in [model["slug"], model["name"], *model["aliases"]]:
                assert len(alias) <= 128, alias
                assert owners.setdefault(alias_key(alias), model["slug"]) == model["slug"], alias


# --- the commands ----------------------------------------------------------------------------


@pytest.fixture
def hub_env(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The client pointed at the local Hub, with a cache of this test's own."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "hf" / "hub"


def test_estimate_a_gptq_repo_uses_its_exact_bytes(
    run: Run, ready_catalog: Path, hub: FakeHub, hub_env: Path
) -> None:
    """`estimate --model OWNER/NAME` reads the repo, says so on stderr, and charges the
    checkpoint's own bytes as the weights."""
    result = run("estimate", "--model", "acme/tiny-llama-GPTQ", "--seq", "128", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        "advisor: read config.json and the headers of 1 safetensors file of acme/tiny-llama-GPTQ "
        f"at commit {COMMIT[:12]} from the Hub ({hub.url}): 0.00 GiB of gptq weights\n"
    )
    out = json.loads(result.stdout)
    assert out["model"] == "acme/tiny-llama-GPTQ"
    assert out["components"]["weights"] == data_bytes(gptq_tensors())
    assert out["workload"]["quant"] == "gptq-4bit (checkpoint)"


def test_fit_offline_from_the_cache_then_refused_when_not_cached(
    run: Run, ready_catalog: Path, hub: FakeHub, hub_env: Path
) -> None:
    """Once read, a repo works with --offline and no request; an uncached one is one line."""
    assert run("fit", "--model", "acme/tiny-llama", "--gpu", "rtx4090", "--json").exit_code == 0
    asked = len(hub.requests)
    cached = run("fit", "--model", "acme/tiny-llama", "--gpu", "rtx4090", "--json", "--offline")
    assert cached.exit_code == 0, cached.stderr
    assert len(hub.requests) == asked
    assert json.loads(cached.stdout)["model"] == "acme/tiny-llama"
    missing = run("fit", "--model", "acme/tiny-llama-sharded", "--gpu", "rtx4090", "--offline")
    assert (missing.exit_code, missing.stdout) == (2, "")
    assert missing.stderr == (
        f"error: acme/tiny-llama-sharded is not in the local Hugging Face cache ({hub_env}); "
        "run without --offline or pass a config.json\n"
    )


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        (
            "acme/gated-llama",
            "acme/gated-llama is gated: accept its licence on the Hub and set HF_TOKEN "
            "(or pass a config.json)",
        ),
        (
            "acme/missing",
            "acme/missing is not a model repo on the Hub (or it is private: set HF_TOKEN)",
        ),
        ("acme/no-config", "acme/no-config has no config.json on the Hub"),
    ],
)
def test_hub_errors_are_one_line_exit_2(
    run: Run, ready_catalog: Path, hub_env: Path, repo: str, message: str
) -> None:
    """Gated without a token, no such repo, no config.json: one line each, exit 2."""
    result = run("estimate", "--model", repo)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {message}\n")


def test_gated_repo_with_token(
    run: Run, ready_catalog: Path, hub_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_TOKEN opens the gated repo."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = run("estimate", "--model", "acme/gated-llama", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["params"] == TINY_PARAMS


def test_catalog_show_accepts_a_hub_id_offline(run: Run, ready_catalog: Path) -> None:
    """A bundled model's Hub id is an alias: no Hub needed."""
    result = run("catalog", "show", "model", "meta-llama/Llama-2-7b-hf", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["slug"] == "llama-2-7b"


def test_catalog_add_model_from_hub_records_repo_and_commit(
    run: Run, ready_catalog: Path, hub_env: Path
) -> None:
    """--from-hub stores the architecture, the repo id as alias, and repo + commit as source."""
    added = run(
        "catalog", "add", "model", "--from-hub", "acme/tiny-llama-sharded", "--family", "llama-3"
    )
    assert added.exit_code == 0, added.stderr
    assert added.stderr.endswith(
        f"advisor: added model 'tiny-llama-sharded' ({TINY_PARAMS:,} parameters)\n"
    )
    # A slug that is another model's alias is refused: "tiny-llama" names TinyLlama.
    clash = run("catalog", "add", "model", "--from-hub", "acme/tiny-llama", "--family", "llama-3")
    assert clash.stderr.endswith(
        "error: the name 'tiny-llama' already refers to model 'tinyllama-1.1b'\n"
    )
    shown = json.loads(run("catalog", "show", "model", "acme/tiny-llama-sharded", "--json").stdout)
    assert (shown["slug"], shown["name"], shown["hidden_size"]) == (
        "tiny-llama-sharded",
        "acme/tiny-llama-sharded",
        64,
    )
    assert (
        shown["source"] == f"huggingface.co/acme/tiny-llama-sharded commit {COMMIT} (config.json)"
    )


def test_checkpoint_folder_on_the_command_line(
    run: Run, ready_catalog: Path, tmp_path: Path
) -> None:
    """`--model ./my-checkpoint` reads the folder, no network."""
    folder = checkpoint_folder(tmp_path, llama_tensors())
    result = run("estimate", "--model", str(folder), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["params"] == TINY_PARAMS
    assert result.stderr.startswith(
        "advisor: read config.json and the headers of 1 safetensors file of my-checkpoint"
    )


@pytest.mark.parametrize(
    ("gpu", "candidates"),
    [
        ("a100", "'a100-sxm4-40gb', 'a100-sxm4-80gb'"),
        ("M2 Max", "'m2-max-32gb', 'm2-max-64gb', 'm2-max-96gb'"),
        ("4060ti", "'rtx4060ti-16gb', 'rtx4060ti-8gb'"),
    ],
)
def test_ambiguous_card_names_list_candidates(
    run: Run, ready_catalog: Path, gpu: str, candidates: str
) -> None:
    """A card name of several memory sizes is refused with the candidates, exit 2."""
    result = run("fit", "--model", "llama-3.1-8b", "--gpu", gpu)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: GPU {gpu!r} is ambiguous: it names {candidates}; name one\n"
    assert run("fit", "--model", "llama-3.1-8b", "--gpu", "a100 80gb", "--json").exit_code == 0


def test_catalog_commands_never_import_the_hub_client(ready_catalog: Path) -> None:
    """fit and which-models on catalog names load neither huggingface_hub nor a vendor library
    (they cost cold-start time and are needed only for a Hub id or detection)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from advisor.cli import main\n"
        "main(['fit', '--model', 'meta-llama/Llama-3.1-8B-Instruct', '--gpu', 'rtx4090',"
        " '--json'])\n"
        "main(['which-models', '--gpu', 'rtx4090', '--json'])\n"
        "print(sorted(m for m in ('huggingface_hub', 'pynvml', 'amdsmi') if m in sys.modules),"
        " file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stderr.splitlines()[-1] == "[]"


def test_checkpoint_kv_cache_dtype_applies_unless_asked(
    run: Run, ready_catalog: Path, hub_env: Path
) -> None:
    """An FP8 KV-cache scheme in the quantization config sizes the cache in FP8; --kv-dtype
    overrides it. The FP8 weights are the file's bytes: one per parameter."""
    found = json.loads(run("estimate", "--model", "acme/tiny-llama-FP8-KV", "--json").stdout)
    assert (found["workload"]["kv_dtype"], found["components"]["weights"]) == ("fp8", TINY_PARAMS)
    asked = run("estimate", "--model", "acme/tiny-llama-FP8-KV", "--kv-dtype", "bf16", "--json")
    assert json.loads(asked.stdout)["workload"]["kv_dtype"] == "bf16"
