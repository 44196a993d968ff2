"""Checkpoints the catalog does not hold: a Hugging Face repo id, or a checkpoint folder on disk.

What is read, never the weights:
- `config.json`: the architecture (through the one reader, `advisor.arch`) and, for a
  pre-quantized checkpoint, its `quantization_config` (method, bits, group size, KV-cache dtype);
- each safetensors file's header (an 8-byte little-endian length, then JSON giving every
  tensor's dtype, shape and byte range in the file): the exact element count and the exact bytes
  the weights occupy, whatever their packing (GPTQ/AWQ int32, FP8, bitsandbytes uint8, MXFP4),
  so no bits-per-weight table is needed.

From the Hub, through the real `huggingface_hub` client, imported here only, inside functions
(commands that never reach the Hub never import it): config.json and the shard index through
`hf_hub_download`, so they land in, and are later read offline from, the local Hugging Face
cache; each shard's header through `parse_safetensors_file_metadata`, which fetches it by HTTP
range request (a shard already in the cache is read from disk instead). This is what
`HfApi.get_safetensors_metadata` does, done step by step so that the index goes to the same
cache folder as config.json and so that cached shards are used offline.

The client reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when it is imported; `HubSettings`
reads them (and HF_HUB_CACHE, HF_TOKEN) at each call and passes them in, with the client's own
precedence (huggingface_hub `constants.py`), so that the environment of the command applies.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from advisor.arch import Architecture, architecture_from_hf_config, count_params
from advisor.errors import HubError, InvalidValueError
from advisor.units import format_size
from advisor.workload import KVDtype, WeightFormat

if TYPE_CHECKING:
    from huggingface_hub import HfApi

CONFIG_FILE = "config.json"
# The Hub's names for a single-file and a sharded safetensors checkpoint (huggingface_hub
# constants SAFETENSORS_SINGLE_FILE and SAFETENSORS_INDEX_FILE).
SAFETENSORS_SINGLE_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
# A safetensors file starts with its header's length as an unsigned 64-bit little-endian integer
# (safetensors format specification, "Format").
HEADER_LENGTH_BYTES = 8
# The safetensors library refuses headers over 100 MB (safetensors `tensor.rs`,
# MAX_HEADER_SIZE = 100_000_000): a larger length is a damaged or foreign file.
MAX_HEADER_BYTES = 100_000_000
# The most shard files a checkpoint may list (the largest public checkpoints have a few hundred;
# DeepSeek-V3 has 163): a bound checked before any request.
MAX_SHARDS = 4096
# huggingface_hub's truthy spellings for boolean environment variables (`constants._is_true`).
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})
# A repo id as the Hub spells it: owner/name, letters, digits, '-', '_' and '.'
# (huggingface_hub `validate_repo_id`; 96 characters at most per part).
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")
OFFLINE_HINT = "run without --offline or pass a config.json"
TensorEntry = tuple[str, list[int], tuple[int, int]]  # dtype, shape, byte range in the file


def looks_like_repo_id(name: str) -> bool:
    """True for `owner/name` as the Hub spells repo ids (and not an existing local path)."""
    return bool(_REPO_ID.match(name)) and ".." not in name and not Path(name).exists()


@dataclass(frozen=True, kw_only=True)
class HubSettings:
    """The client's settings as the environment gives them now."""

    endpoint: str | None
    cache_dir: Path
    offline: bool
    token: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, offline: bool = False) -> HubSettings:
        if environ.get("HF_HUB_CACHE"):
            cache = Path(environ["HF_HUB_CACHE"]).expanduser()
        elif environ.get("HF_HOME"):
            cache = Path(environ["HF_HOME"]).expanduser() / "hub"
        else:
            xdg = environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
            cache = Path(xdg) / "huggingface" / "hub"
        env_offline = environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
        return cls(
            endpoint=(environ.get("HF_ENDPOINT") or "").rstrip("/") or None,
            cache_dir=cache,
            offline=offline or env_offline,
            token=environ.get("HF_TOKEN") or None,
        )


@dataclass(frozen=True, kw_only=True)
class WeightFiles:
    """What a checkpoint's safetensors headers say about its tensors."""

    files: int
    tensors: int
    elements: int  # as stored: a packed int32 of GPTQ/AWQ counts once
    bytes: int  # the tensors' byte ranges added up: what the weights occupy
    bytes_by_dtype: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, kw_only=True)
class Quantization:
    """A pre-quantized checkpoint's `quantization_config`, as far as memory depends on it."""

    method: str
    bits: int | None = None
    group_size: int | None = None
    kv_cache_dtype: str | None = None


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A model read from a repo or a folder: where from, its architecture, its weight files."""

    name: str  # the repo id, or the folder's name
    repo_id: str | None
    revision: str | None  # the commit read (Hub and cache); None for a folder
    location: str  # where it was read, for the message on stderr
    config: Mapping[str, Any]
    architecture: Architecture
    weights: WeightFiles | None  # None: no safetensors headers could be read
    quantization: Quantization | None

    @property
    def source(self) -> str:
        """What a catalog row records as its source."""
        if self.repo_id is not None:
            return f"huggingface.co/{self.repo_id} commit {self.revision} (config.json)"
        return f"config.json read from {self.location}"

    def weight_format(self) -> WeightFormat | None:
        """A pre-quantized checkpoint's own format, with its exact weight bytes (None for a
        plain checkpoint, whose weights follow the precision asked for, or without headers)."""
        if self.quantization is None or self.weights is None:
            return None
        bits = f"-{self.quantization.bits}bit" if self.quantization.bits else ""
        return WeightFormat.of_checkpoint(
            f"{self.quantization.method}{bits} (checkpoint)",
            exact_bytes=self.weights.bytes,
            params=count_params(self.architecture).total,
        )

    def kv_dtype(self) -> KVDtype | None:
        """The KV-cache dtype the checkpoint's quantization config asks for (FP8), if any."""
        kv = self.quantization.kv_cache_dtype if self.quantization is not None else None
        return KVDtype(kv) if kv in {k.value for k in KVDtype} else None

    def message(self) -> str:
        """One line saying what was read, from where, and what the headers say."""
        what = "config.json"
        if self.weights is not None:
            files = "file" if self.weights.files == 1 else "files"
            what += f" and the headers of {self.weights.files} safetensors {files}"
        revision = f" at commit {self.revision[:12]}" if self.revision else ""
        line = f"read {what} of {self.name}{revision} from {self.location}"
        if self.weights is None:
            return line + "; no safetensors headers, so weights are sized from the architecture"
        size = format_size(self.weights.bytes, digits=2)
        if self.quantization is not None:  # packed tensors: elements are not parameters
            return line + f": {size} of {self.quantization.method} weights"
        return line + f": {self.weights.elements:,} parameters, {size} of weights"


# --- safetensors headers ---------------------------------------------------------------------


def _summarise(files: int, tensors: Iterable[TensorEntry]) -> WeightFiles:
    count = elements = total = 0
    by_dtype: dict[str, int] = {}
    for dtype, shape, (begin, end) in tensors:
        n = 1
        for dim in shape:
            n *= dim
        count += 1
        elements += n
        total += end - begin
        by_dtype[dtype] = by_dtype.get(dtype, 0) + end - begin
    return WeightFiles(
        files=files,
        tensors=count,
        elements=elements,
        bytes=total,
        bytes_by_dtype=MappingProxyType(dict(sorted(by_dtype.items()))),
    )


def read_header(path: Path) -> Iterator[TensorEntry]:
    """Each tensor's (dtype, shape, byte range) from a safetensors file's header."""
    try:
        with path.open("rb") as handle:
            prefix = handle.read(HEADER_LENGTH_BYTES)
            if len(prefix) < HEADER_LENGTH_BYTES:
                raise InvalidValueError(f"{path}: not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise InvalidValueError(
                    f"{path}: not a safetensors file (header length {length} bytes)"
                )
            raw = handle.read(length)
        size = path.stat().st_size
    except OSError as error:
        raise InvalidValueError(f"cannot read {path}: {error.strerror}") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidValueError(f"{path}: the safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise InvalidValueError(f"{path}: the safetensors header is not a JSON object")
    data_bytes = size - HEADER_LENGTH_BYTES - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = str(info["dtype"]), [int(d) for d in info["shape"]]
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise InvalidValueError(
                f"{path}: tensor {name!r} has a malformed header entry"
            ) from None
        if not 0 <= begin <= end <= data_bytes:
            raise InvalidValueError(f"{path}: tensor {name!r} lies outside the file (truncated?)")
        yield dtype, shape, (begin, end)


def _shard_names(index_path: Path) -> list[str]:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        names = sorted(set(index["weight_map"].values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError, TypeError):
        raise InvalidValueError(f"{index_path}: not a safetensors index") from None
    if len(names) > MAX_SHARDS:
        raise InvalidValueError(f"{index_path}: {len(names)} shards (at most {MAX_SHARDS})")
    if not all(isinstance(n, str) and "/" not in n and n != ".." for n in names):
        raise InvalidValueError(f"{index_path}: shard names must be plain file names")
    return names


# --- config.json -----------------------------------------------------------------------------


def _load_config(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidValueError(f"cannot read {path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidValueError(f"{path}: not a JSON file") from None
    if not isinstance(content, dict):
        raise InvalidValueError(f"{path}: a config.json must hold a JSON object")
    return content


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def quantization_of(config: Mapping[str, Any]) -> Quantization | None:
    """The `quantization_config` of a pre-quantized checkpoint (None for a plain one).

    Field names as transformers' quantizer configs spell them: `quant_method`, `bits`
    (GPTQ/AWQ), `load_in_4bit`/`load_in_8bit` (bitsandbytes), `group_size` (GPTQ/AWQ) or
    `weight_block_size` (FP8 block scaling); the KV-cache dtype from compressed-tensors'
    `kv_cache_scheme` (`num_bits` 8 of `type` float is FP8) or a `kv_cache_dtype` key.
    """
    q = config.get("quantization_config")
    if not isinstance(q, dict):
        inner = config.get("text_config")
        q = inner.get("quantization_config") if isinstance(inner, dict) else None
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method") or "unknown")
    bits = _int_or_none(q.get("bits")) or _int_or_none(q.get("w_bit"))
    if bits is None and q.get("load_in_4bit") is True:
        bits = 4
    if bits is None and q.get("load_in_8bit") is True:
        bits = 8
    group = _int_or_none(q.get("group_size")) or _int_or_none(q.get("q_group_size"))
    block = q.get("weight_block_size")
    if group is None and isinstance(block, list) and block:
        group = _int_or_none(block[-1])
    kv: str | None = None
    scheme = q.get("kv_cache_scheme")
    if isinstance(scheme, dict) and scheme.get("num_bits") == 8:
        kv = "fp8" if scheme.get("type") == "float" else "int8"
    elif isinstance(q.get("kv_cache_dtype"), str):
        kv = str(q["kv_cache_dtype"])
    return Quantization(method=method, bits=bits, group_size=group, kv_cache_dtype=kv)


def _checkpoint(
    *,
    name: str,
    repo_id: str | None,
    revision: str | None,
    location: str,
    config: dict[str, Any],
    weights: WeightFiles | None,
) -> Checkpoint:
    return Checkpoint(
        name=name,
        repo_id=repo_id,
        revision=revision,
        location=location,
        config=MappingProxyType(config),
        architecture=architecture_from_hf_config(config),
        weights=weights,
        quantization=quantization_of(config),
    )


# --- a folder on disk ------------------------------------------------------------------------


def _folder_weights(folder: Path) -> WeightFiles | None:
    index = folder / SAFETENSORS_INDEX_FILE
    if index.is_file():
        names = _shard_names(index)
    else:
        names = sorted(p.name for p in folder.glob("*.safetensors"))
        if len(names) > MAX_SHARDS:
            raise InvalidValueError(
                f"{folder}: {len(names)} safetensors files (at most {MAX_SHARDS})"
            )
    if not names:
        return None
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise InvalidValueError(f"{folder}: the index lists {missing[0]!r}, which is not there")
    return _summarise(len(names), (t for n in names for t in read_header(folder / n)))


def read_folder(folder: Path) -> Checkpoint:
    """A checkpoint folder: its config.json and its safetensors files' headers."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise HubError(f"{folder} has no config.json")
    resolved = folder.resolve()
    return _checkpoint(
        name=resolved.name,
        repo_id=None,
        revision=None,
        location=f"the folder {resolved}",
        config=_load_config(config_path),
        weights=_folder_weights(folder),
    )


# --- the Hub and its cache -------------------------------------------------------------------


def _api(settings: HubSettings) -> HfApi:
    from huggingface_hub import HfApi

    return HfApi(endpoint=settings.endpoint, token=settings.token)


def _hub_error(repo_id: str, error: Exception, settings: HubSettings) -> HubError:
    """The client's exception as one line naming the repo and what to do."""
    from huggingface_hub import errors

    if isinstance(error, errors.GatedRepoError):
        if settings.token:
            return HubError(
                f"{repo_id} is gated and this token has no access: request it on the Hub"
            )
        return HubError(
            f"{repo_id} is gated: accept its licence on the Hub and set HF_TOKEN "
            "(or pass a config.json)"
        )
    if isinstance(error, errors.RepositoryNotFoundError):
        return HubError(
            f"{repo_id} is not a model repo on the Hub (or it is private: set HF_TOKEN)"
        )
    if isinstance(error, errors.RevisionNotFoundError):
        return HubError(f"{repo_id}: the Hub has no such revision")
    if isinstance(error, errors.RemoteEntryNotFoundError):
        return HubError(f"{repo_id} has no config.json on the Hub")
    if isinstance(error, errors.LocalEntryNotFoundError | errors.OfflineModeIsEnabled):
        if settings.offline:
            return HubError(
                f"{repo_id} is not in the local Hugging Face cache ({settings.cache_dir}); "
                f"{OFFLINE_HINT}"
            )
        return HubError(
            f"cannot reach the Hub for {repo_id} and it is not in the local Hugging Face cache; "
            "check the connection or pass a config.json"
        )
    if isinstance(error, errors.HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "no"
        return HubError(f"the Hub answered {status} for {repo_id}")
    return HubError(f"cannot reach the Hub for {repo_id}: {type(error).__name__}")


def _download(api: HfApi, settings: HubSettings, repo_id: str, filename: str) -> Path:
    return Path(
        api.hf_hub_download(
            repo_id,
            filename,
            cache_dir=settings.cache_dir,
            local_files_only=settings.offline,
        )
    )


def _hub_weights(
    api: HfApi, settings: HubSettings, repo_id: str, snapshot: Path
) -> WeightFiles | None:
    """The safetensors headers: cached shards from disk, the others by range request."""
    from huggingface_hub import errors

    revision = snapshot.name
    try:
        names = _shard_names(_download(api, settings, repo_id, SAFETENSORS_INDEX_FILE))
    except errors.EntryNotFoundError:  # remote: no index; local: not cached (or none)
        names = [SAFETENSORS_SINGLE_FILE]
    tensors: list[TensorEntry] = []
    for name in names:
        cached = snapshot / name
        if cached.is_file():
            tensors.extend(read_header(cached))
            continue
        if settings.offline:
            return None
        try:
            meta = api.parse_safetensors_file_metadata(repo_id, name, revision=revision)
        except errors.RemoteEntryNotFoundError:
            return None
        except errors.SafetensorsParsingError:
            raise HubError(f"{repo_id}: {name} has an unreadable safetensors header") from None
        tensors.extend(
            (info.dtype, list(info.shape), (info.data_offsets[0], info.data_offsets[1]))
            for info in meta.tensors.values()
        )
    return _summarise(len(names), tensors)


def read_hub(repo_id: str, settings: HubSettings) -> Checkpoint:
    """A Hub repo's config.json and safetensors headers (the cache first when offline)."""
    from huggingface_hub import errors
    from huggingface_hub.errors import HTTPError  # type: ignore[attr-defined]

    api = _api(settings)
    try:
        config_path = _download(api, settings, repo_id, CONFIG_FILE)
        snapshot = config_path.parent
        weights = _hub_weights(api, settings, repo_id, snapshot)
    except (errors.HfHubHTTPError, errors.EntryNotFoundError, errors.OfflineModeIsEnabled) as e:
        raise _hub_error(repo_id, e, settings) from None
    except HTTPError as error:  # the transport failed: refused, reset, timed out
        raise _hub_error(repo_id, error, settings) from None
    where = (
        f"the local Hugging Face cache ({settings.cache_dir})"
        if settings.offline
        else f"the Hub ({settings.endpoint or 'huggingface.co'})"
    )
    return _checkpoint(
        name=repo_id,
        repo_id=repo_id,
        revision=snapshot.name,
        location=where,
        config=_load_config(config_path),
        weights=weights,
    )


def read_checkpoint(name: str, settings: HubSettings) -> Checkpoint:
    """A folder by path, else a repo id on the Hub (or in its cache)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return read_folder(path)
    if not looks_like_repo_id(name):
        raise HubError(f"{name!r} is neither a checkpoint folder nor a Hugging Face repo id")
    return read_hub(name, settings)
