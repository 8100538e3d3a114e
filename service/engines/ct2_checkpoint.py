"""Read CTranslate2 Whisper models and convert them into checkpoints that openai-whisper loads."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import torch

Array = npt.NDArray[Any]

ALIGNMENT_HEADS_KEY = "alignment_heads"

_SUPPORTED_BINARY_VERSION = 6
_WHISPER_SPEC = "WhisperSpec"
# Type ids in the order ctranslate2.specs.model_spec._dtype_to_type_id assigns them.
_DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


@dataclass(frozen=True)
class Ct2Model:
    """The contents of a CTranslate2 model folder: model.bin variables plus config.json."""

    spec_name: str
    revision: int
    variables: dict[str, Array]
    aliases: dict[str, str]
    config: dict[str, Any]


def read_ct2_model(path: Path) -> Ct2Model:
    """Read a CTranslate2 model folder (model.bin and config.json) into memory."""
    with (path / "model.bin").open("rb") as stream:
        version = _read_u32(stream)
        if version != _SUPPORTED_BINARY_VERSION:
            raise ValueError(f"{path}/model.bin has binary version {version}, expected 6")
        spec_name = _read_string(stream)
        revision = _read_u32(stream)
        variables = dict(_read_variable(stream) for _ in range(_read_u32(stream)))
        aliases = {_read_string(stream): _read_string(stream) for _ in range(_read_u32(stream))}
    config_file = path / "config.json"
    config: dict[str, Any] = json.loads(config_file.read_text()) if config_file.is_file() else {}
    return Ct2Model(spec_name, revision, variables, aliases, config)


def convert_to_openai_whisper(ct2_dir: Path, out_file: Path) -> None:
    """Convert a CTranslate2 Whisper folder into an openai-whisper checkpoint file, written atomically."""
    model = read_ct2_model(ct2_dir)
    if model.spec_name != _WHISPER_SPEC:
        raise ValueError(f"{ct2_dir} holds a {model.spec_name}, not a {_WHISPER_SPEC}")
    if any(name.endswith("weight_scale") for name in model.variables):
        raise ValueError(f"{ct2_dir} holds quantized weights; convert a float16 or float32 model")
    dims = _model_dimensions(model.variables)
    checkpoint = {
        "dims": dims,
        "model_state_dict": _whisper_state_dict(model.variables, dims),
        ALIGNMENT_HEADS_KEY: [[layer, head] for layer, head in _alignment_heads(model.config)],
    }
    _save_atomically(checkpoint, out_file)


def openai_whisper_checkpoint(ct2_dir: Path, cache_dir: Path, name: str) -> Path:
    """Return `cache_dir/openai-whisper/<name>.pt`, converting it when missing or older than model.bin."""
    out_file = cache_dir / "openai-whisper" / f"{name}.pt"
    source_mtime = (ct2_dir / "model.bin").stat().st_mtime
    if out_file.is_file() and out_file.stat().st_mtime >= source_mtime:
        return out_file
    out_file.parent.mkdir(parents=True, exist_ok=True)
    convert_to_openai_whisper(ct2_dir, out_file)
    return out_file


def ct2_alignment_heads(ct2_dir: Path) -> list[tuple[int, int]]:
    """Return the (decoder layer, head) pairs listed in a CTranslate2 folder's config.json."""
    return _alignment_heads(json.loads((ct2_dir / "config.json").read_text()))


def alignment_heads_dump(heads: Sequence[tuple[int, int]], n_text_layer: int, n_text_head: int) -> bytes:
    """Encode heads the way `whisper.model.Whisper.set_alignment_heads` decodes them."""
    mask = np.zeros((n_text_layer, n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def _read_u8(stream: BinaryIO) -> int:
    """Read one little-endian unsigned byte."""
    return int(struct.unpack("<B", stream.read(1))[0])


def _read_u32(stream: BinaryIO) -> int:
    """Read one little-endian unsigned 32-bit integer."""
    return int(struct.unpack("<I", stream.read(4))[0])


def _read_string(stream: BinaryIO) -> str:
    """Read a u16-length-prefixed, NUL-terminated UTF-8 string."""
    (length,) = struct.unpack("<H", stream.read(2))
    return stream.read(length)[:-1].decode("utf-8")


def _read_variable(stream: BinaryIO) -> tuple[str, Array]:
    """Read one named variable: rank, dimensions, dtype id, byte count, then the raw values."""
    name = _read_string(stream)
    shape = tuple(_read_u32(stream) for _ in range(_read_u8(stream)))
    dtype = _DTYPES[_read_u8(stream)]
    raw = stream.read(_read_u32(stream))
    if dtype == "bfloat16":
        # numpy has no bfloat16; its bits are the high half of a float32.
        widened = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return name, widened.view(np.float32).reshape(shape)
    return name, np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def _model_dimensions(variables: dict[str, Array]) -> dict[str, int]:
    """Derive openai-whisper's ModelDimensions fields from the variable shapes."""
    n_vocab, n_text_state = variables["decoder/embeddings/weight"].shape
    n_audio_ctx, n_audio_state = variables["encoder/position_encodings/encodings"].shape
    return {
        "n_mels": int(variables["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(n_audio_ctx),
        "n_audio_state": int(n_audio_state),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": _layer_count(variables, "encoder"),
        "n_vocab": int(n_vocab),
        "n_text_ctx": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(n_text_state),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": _layer_count(variables, "decoder"),
    }


def _layer_count(variables: dict[str, Array], stack: str) -> int:
    """Count the layer_<i> blocks of the encoder or decoder."""
    layer = re.compile(rf"{stack}/layer_(\d+)/")
    return len({match[1] for match in map(layer.match, variables) if match})


def _whisper_state_dict(variables: dict[str, Array], dims: dict[str, int]) -> dict[str, torch.Tensor]:
    """Map CTranslate2 variable names onto openai-whisper's state dict, as float32 tensors."""
    state: dict[str, Array] = {
        "encoder.conv1.weight": variables["encoder/conv1/weight"],
        "encoder.conv1.bias": variables["encoder/conv1/bias"],
        "encoder.conv2.weight": variables["encoder/conv2/weight"],
        "encoder.conv2.bias": variables["encoder/conv2/bias"],
        # The file's position table, not openai-whisper's recomputed sinusoids, matches the trained weights.
        "encoder.positional_embedding": variables["encoder/position_encodings/encodings"],
        **_layer_norm(variables, "encoder/layer_norm", "encoder.ln_post"),
        "decoder.token_embedding.weight": variables["decoder/embeddings/weight"],
        "decoder.positional_embedding": variables["decoder/position_encodings/encodings"],
        **_layer_norm(variables, "decoder/layer_norm", "decoder.ln"),
    }
    for index in range(dims["n_audio_layer"]):
        state.update(_encoder_block(variables, index))
    for index in range(dims["n_text_layer"]):
        state.update(_decoder_block(variables, index))
    return {name: torch.from_numpy(value.astype(np.float32)) for name, value in state.items()}


def _encoder_block(variables: dict[str, Array], index: int) -> dict[str, Array]:
    """Map one encoder layer: self-attention and feed-forward."""
    source, target = f"encoder/layer_{index}", f"encoder.blocks.{index}"
    return {
        **_self_attention(variables, f"{source}/self_attention", f"{target}.attn"),
        **_layer_norm(variables, f"{source}/self_attention/layer_norm", f"{target}.attn_ln"),
        **_feed_forward(variables, f"{source}/ffn", target),
    }


def _decoder_block(variables: dict[str, Array], index: int) -> dict[str, Array]:
    """Map one decoder layer: self-attention, cross-attention and feed-forward."""
    source, target = f"decoder/layer_{index}", f"decoder.blocks.{index}"
    return {
        **_self_attention(variables, f"{source}/self_attention", f"{target}.attn"),
        **_layer_norm(variables, f"{source}/self_attention/layer_norm", f"{target}.attn_ln"),
        **_cross_attention(variables, f"{source}/attention", f"{target}.cross_attn"),
        **_layer_norm(variables, f"{source}/attention/layer_norm", f"{target}.cross_attn_ln"),
        **_feed_forward(variables, f"{source}/ffn", target),
    }


def _self_attention(variables: dict[str, Array], source: str, target: str) -> dict[str, Array]:
    """Split the fused query/key/value projection (linear_0) and map the output one (linear_1)."""
    query_w, key_w, value_w = np.split(variables[f"{source}/linear_0/weight"], 3)
    query_b, _, value_b = np.split(variables[f"{source}/linear_0/bias"], 3)
    return {
        **_attention_inputs(target, (query_w, query_b), key_w, (value_w, value_b)),
        **_linear(variables, f"{source}/linear_1", f"{target}.out"),
    }


def _cross_attention(variables: dict[str, Array], source: str, target: str) -> dict[str, Array]:
    """Map the query projection (linear_0), split the fused key/value one (linear_1), map the output."""
    key_w, value_w = np.split(variables[f"{source}/linear_1/weight"], 2)
    _, value_b = np.split(variables[f"{source}/linear_1/bias"], 2)
    query_w, query_b = variables[f"{source}/linear_0/weight"], variables[f"{source}/linear_0/bias"]
    return {
        **_attention_inputs(target, (query_w, query_b), key_w, (value_w, value_b)),
        **_linear(variables, f"{source}/linear_2", f"{target}.out"),
    }


def _attention_inputs(
    target: str, query: tuple[Array, Array], key_weight: Array, value: tuple[Array, Array]
) -> dict[str, Array]:
    """Name the query/key/value projections; whisper's key has none of the bias CTranslate2 stores.

    A key bias adds the same q.b to every key's score, which softmax cancels, so dropping it is exact.
    """
    return {
        f"{target}.query.weight": query[0],
        f"{target}.query.bias": query[1],
        f"{target}.key.weight": key_weight,
        f"{target}.value.weight": value[0],
        f"{target}.value.bias": value[1],
    }


def _feed_forward(variables: dict[str, Array], source: str, target: str) -> dict[str, Array]:
    """Map the feed-forward block onto whisper's mlp Sequential (Linear, GELU, Linear) and mlp_ln."""
    return {
        **_layer_norm(variables, f"{source}/layer_norm", f"{target}.mlp_ln"),
        **_linear(variables, f"{source}/linear_0", f"{target}.mlp.0"),
        **_linear(variables, f"{source}/linear_1", f"{target}.mlp.2"),
    }


def _linear(variables: dict[str, Array], source: str, target: str) -> dict[str, Array]:
    """Map a linear layer's weight and bias."""
    return {
        f"{target}.weight": variables[f"{source}/weight"],
        f"{target}.bias": variables[f"{source}/bias"],
    }


def _layer_norm(variables: dict[str, Array], source: str, target: str) -> dict[str, Array]:
    """Map a layer norm's gamma/beta onto weight/bias."""
    return {
        f"{target}.weight": variables[f"{source}/gamma"],
        f"{target}.bias": variables[f"{source}/beta"],
    }


def _alignment_heads(config: dict[str, Any]) -> list[tuple[int, int]]:
    """Read the [layer, head] pairs of a CTranslate2 config as tuples."""
    return [(int(layer), int(head)) for layer, head in config.get(ALIGNMENT_HEADS_KEY) or []]


def _save_atomically(checkpoint: dict[str, Any], out_file: Path) -> None:
    """torch.save into a temporary file beside out_file, sync it, then rename it into place."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed before the rename below
        dir=out_file.parent, prefix=f".{out_file.name}.", suffix=".tmp", delete=False
    )
    temporary = Path(handle.name)
    try:
        with handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(0o644)  # NamedTemporaryFile creates 0600; the cache is shared like any file.
        os.replace(temporary, out_file)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
