"""Load GPT-2 or Llama-format weights saved by Hugging Face into lslm's own ``GPT``.

A Hugging Face checkpoint folder holds ``config.json`` (the shape of the model) and
``model.safetensors`` or ``pytorch_model.bin`` (the tensors). lslm's GPT has the same
architecture as GPT-2, so loading is mostly renaming, with two differences:

* GPT-2 stores its linear layers as ``Conv1D`` modules whose weight is (in, out);
  ``nn.Linear`` keeps (out, in), so those matrices are transposed.
* GPT-2 uses the tanh approximation of GELU (``gelu_new``), which the config records as
  ``gelu_approx="tanh"``.

A Llama-format folder (``model_type`` "llama": Llama 2 and 3, and the many models that
copy its layout) becomes a GPT with lslm's modern options: RoPE, RMSNorm, SwiGLU,
grouped-query attention, no biases and (usually) an untied head. Its separate q, k and v
projections are stacked into lslm's one ``c_attn`` matrix. Variants lslm does not
implement (scaled RoPE, biases, another activation) are refused with a one-line error.

Nothing here touches the network: get the files first (see ``find_local_gpt2``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lslm.checkpoint import MAX_MODEL_BYTES, check_model_size, read_torch_file, weights_problem
from lslm.errors import LslmError, shown
from lslm.files import MAX_CONFIG_BYTES, open_regular, read_json, read_text
from lslm.model import GPT, GPTConfig

# GPT-2's Conv1D layers: (in, out) there, (out, in) in nn.Linear.
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
GET_GPT2 = (
    "on a machine with internet run `huggingface-cli download gpt2` (or "
    "`GPT2LMHeadModel.from_pretrained('gpt2').save_pretrained(DIR)` with transformers) "
    "and copy the folder here"
)


# config.json fields that must be positive whole numbers, when present.
INT_FIELDS = ("vocab_size", "n_positions", "n_ctx", "n_layer", "n_head", "n_embd")
FLAG_FIELDS = ("add_cross_attention", "scale_attn_by_inverse_layer_idx", "scale_attn_weights",
               "tie_word_embeddings")
# Bounds on what is read: a config.json is small, and the weights at most the largest model
# lslm builds (MAX_MODEL_BYTES of float32) plus room for headers.
MAX_WEIGHTS_BYTES = MAX_MODEL_BYTES + 2**30


def read_config(folder: Path) -> dict:
    """The folder's ``config.json``, checked to describe a GPT-2 that lslm can run.

    Every field lslm reads must have the right type (whole numbers for sizes, true/false
    for flags): a list, a null or a float in their place is an error here, not later.
    """
    file = folder / "config.json"
    if not file.exists() and not file.is_symlink():
        raise LslmError(f"{folder} has no config.json: pass a Hugging Face model folder ({GET_GPT2})")
    hf = read_json(file, MAX_CONFIG_BYTES, "config.json")
    if not isinstance(hf, dict):
        raise LslmError(f"{file} does not hold a JSON object of settings: download the model again")
    kind = hf.get("model_type")
    if kind not in ("gpt2", "llama"):
        raise LslmError(
            f"{folder} holds a {shown(kind)} model, but lslm loads only GPT-2 and Llama-format models "
            "(model_type 'gpt2' or 'llama'): pass a folder such as gpt2 or a Llama-format model"
        )
    if kind == "llama":
        return hf
    for name in INT_FIELDS:
        value = hf.get(name, 1)
        if type(value) is not int or value < 1:
            raise LslmError(f"{name} is {shown(value)} in {file}, but it must be a positive whole "
                            "number: download the model again")
    for name in FLAG_FIELDS:
        if name in hf and type(hf[name]) is not bool:
            raise LslmError(f"{name} is {shown(hf[name])} in {file}, but it must be true or false")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if type(eps) not in (int, float) or eps != 1e-5:
        raise LslmError(f"layer_norm_epsilon is {shown(eps)} in {file}, but lslm's LayerNorm uses "
                        "1e-5: this checkpoint is not a standard GPT-2")
    act = hf.get("activation_function", "gelu_new")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise LslmError(f"activation_function {shown(act)} in {file} is not supported; lslm knows "
                        f"{', '.join(ACTIVATIONS)}")
    n_embd = hf.get("n_embd", 768)
    if hf.get("n_inner") is not None and hf.get("n_inner") != 4 * n_embd:
        raise LslmError(f"n_inner={shown(hf['n_inner'])} in {file}: lslm's MLP is always 4 * n_embd wide")
    if hf.get("add_cross_attention") or hf.get("scale_attn_by_inverse_layer_idx") \
            or hf.get("scale_attn_weights", True) is False or hf.get("tie_word_embeddings", True) is False:
        raise LslmError(f"{file} asks for a GPT-2 variant (cross-attention, untied head or other "
                        "attention scaling) that lslm does not implement")
    return hf


def gpt_config(hf: dict) -> GPTConfig:
    """The ``GPTConfig`` matching a Hugging Face GPT-2 ``config.json``."""
    return GPTConfig(
        vocab_size=hf.get("vocab_size", 50257),
        block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
        n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12),
        n_embd=hf.get("n_embd", 768),
        dropout=0.0,
        bias=True,
        gelu_approx=ACTIVATIONS[hf.get("activation_function", "gelu_new")],
    )


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors`` (preferred) or ``pytorch_model.bin``.

    Both must be regular files of at most ``MAX_WEIGHTS_BYTES``. A ``.bin`` file is a
    pickle, so it is opened with ``weights_only=True``: only tensors and plain containers,
    never code; and it must hold a dict of named tensors.
    """
    safe, binary = (folder / name for name in WEIGHT_FILES)
    if safe.exists():
        from safetensors.torch import load_file

        open_regular(safe, MAX_WEIGHTS_BYTES, "weights file").close()  # a device or FIFO is refused
        try:
            return load_file(str(safe))
        except Exception:  # SafetensorError, OSError ...: the message may quote the header
            raise LslmError(f"{safe} is not a readable safetensors file (truncated or corrupt): "
                            "download it again") from None
    if binary.exists():
        state = read_torch_file(binary, MAX_WEIGHTS_BYTES, "weights file", "download it again")
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            raise LslmError(f"{binary} does not hold a dict of named tensors; it is not a model "
                            "checkpoint: download it again")
        return state
    raise LslmError(f"{folder} has config.json but no {' or '.join(WEIGHT_FILES)}: "
                    "download the weights too")


def convert_state(hf_state: dict[str, torch.Tensor], target: GPTConfig | torch.nn.Module,
                  where: str | Path = "the checkpoint") -> dict[str, torch.Tensor]:
    """Rename (and transpose where needed) Hugging Face GPT-2 tensors to lslm's names, checked
    against ``target`` (a ``GPTConfig``, or a ``GPT`` whose config is used) before any
    model is built."""
    config = target.config if isinstance(target, torch.nn.Module) else target
    out: dict[str, torch.Tensor] = {}
    for name, tensor in hf_state.items():
        key = name.removeprefix("transformer.")
        # The causal-mask buffers of old checkpoints, and the head tied to wte, are not weights.
        if key == "lm_head.weight" or key.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        key = key.replace("h.", "blocks.", 1) if key.startswith("h.") else key
        if key.endswith(CONV1D) and tensor.dim() == 2:
            tensor = tensor.t()
        if key in out:
            raise LslmError(f"{where} holds the tensor {shown(key)} twice (with and without the "
                            "'transformer.' prefix): it is not a plain GPT-2 checkpoint")
        out[key] = tensor
    if "wte.weight" in out:
        out["lm_head.weight"] = out["wte.weight"]  # tied, as in GPT-2
    problem = weights_problem(config, out)
    if problem:
        raise LslmError(f"{where} does not match config.json ({problem}): the weights and "
                        "config.json do not belong together, or the download is incomplete")
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}


# ------------------------------------------------------------------- Llama format
LLAMA_INT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "head_dim")


def llama_config(hf: dict, file: str | Path = "config.json") -> GPTConfig:
    """The ``GPTConfig`` matching a Hugging Face Llama ``config.json`` (the defaults are
    ``transformers.LlamaConfig``'s, those of Llama 2 7B), or a one-line ``LslmError`` for a
    variant lslm does not implement."""
    for name in LLAMA_INT_FIELDS:
        value = hf.get(name, 1)
        if value is not None and (type(value) is not int or value < 1):
            raise LslmError(f"{name} is {shown(value)} in {file}, but it must be a positive whole number")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise LslmError(f"hidden_act {shown(act)} in {file} is not supported: lslm's SwiGLU uses silu")
    for name in ("attention_bias", "mlp_bias"):
        if hf.get(name, False) is not False:
            raise LslmError(f"{name} is {shown(hf[name])} in {file}: lslm's Llama layout has no biases")
    # transformers before 5 wrote rope_theta and rope_scaling; 5 writes rope_parameters.
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    if not isinstance(rope, dict) or not isinstance(scaling, dict):
        raise LslmError(f"rope_parameters / rope_scaling in {file} must be JSON objects")
    kinds = (rope.get("rope_type", "default"), scaling.get("rope_type", scaling.get("type", "default")))
    kind = next((k for k in kinds if k != "default"), "default")
    if kind != "default":
        raise LslmError(f"RoPE scaling {shown(kind)} in {file} is not supported: lslm implements plain "
                        "RoPE only (rope_type 'default')")
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    hidden, heads = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    if hf.get("head_dim") not in (None, hidden // heads):
        raise LslmError(f"head_dim={hf['head_dim']} in {file} is not hidden_size / num_attention_heads "
                        f"= {hidden // heads}: lslm's attention needs that")
    return GPTConfig(
        vocab_size=hf.get("vocab_size", 32000),
        block_size=hf.get("max_position_embeddings", 2048),
        n_layer=hf.get("num_hidden_layers", 32),
        n_head=heads,
        n_embd=hidden,
        bias=False,
        position="rope",
        rope_theta=theta,
        norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        mlp="swiglu",
        mlp_hidden=hf.get("intermediate_size", 11008),
        n_kv_head=hf.get("num_key_value_heads") or heads,
        tie_embeddings=hf.get("tie_word_embeddings", False),
    )


# lslm's name for each tensor of a Llama layer (q, k and v are stacked into c_attn).
LLAMA_LAYER = {"input_layernorm.weight": "ln_1.weight", "self_attn.o_proj.weight": "attn.c_proj.weight",
               "post_attention_layernorm.weight": "ln_2.weight", "mlp.gate_proj.weight": "mlp.w_gate.weight",
               "mlp.up_proj.weight": "mlp.w_up.weight", "mlp.down_proj.weight": "mlp.c_proj.weight"}
QKV = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight")


def convert_llama_state(hf_state: dict[str, torch.Tensor], config: GPTConfig,
                        where: str | Path = "the checkpoint") -> dict[str, torch.Tensor]:
    """Hugging Face Llama tensors under lslm's names, checked against ``config``."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in hf_state.items():
        if name.endswith("rotary_emb.inv_freq"):  # a buffer old checkpoints kept: recomputed here
            continue
        key = name.removeprefix("model.")
        if key.startswith("layers.") and key.split(".")[1].isdigit():
            _, i, rest = key.split(".", 2)
            if rest in QKV:
                qkv.setdefault(int(i), {})[rest] = tensor
                continue
            key = f"blocks.{i}.{LLAMA_LAYER.get(rest, rest)}"
        else:
            key = {"embed_tokens.weight": "wte.weight", "norm.weight": "ln_f.weight"}.get(key, key)
        out[key] = tensor
    for i, parts in sorted(qkv.items()):
        missing = [p for p in QKV if p not in parts]
        if missing:
            raise LslmError(f"{where} lacks model.layers.{i}.{missing[0]}: the download is incomplete")
        if any(t.dim() != 2 for t in parts.values()) or len({t.size(1) for t in parts.values()}) != 1:
            raise LslmError(f"{where}: the q, k and v projections of layer {i} have shapes "
                            f"{[tuple(parts[p].shape) for p in QKV]}, which do not fit together")
        out[f"blocks.{i}.attn.c_attn.weight"] = torch.cat([parts[p] for p in QKV])
    if config.tie_embeddings and "wte.weight" in out:
        out.setdefault("lm_head.weight", out["wte.weight"])
    problem = weights_problem(config, out)
    if problem:
        raise LslmError(f"{where} does not match config.json ({problem}): the weights and "
                        "config.json do not belong together, or the download is incomplete")
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}


def from_pretrained(path: str | Path) -> GPT:
    """A ``GPT`` with the weights of the GPT-2 or Llama-format checkpoint folder at ``path``,
    in eval mode.

    ``path`` is a local folder (for example a Hugging Face cache snapshot). The logits
    match ``transformers.GPT2LMHeadModel`` (or ``LlamaForCausalLM``) on the same folder. The
    config is checked, and the model's size (at most ``lslm.checkpoint.MAX_MODEL_BYTES`` of
    float32 parameters) and the shapes of the weights against it, before the model is built.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise LslmError(f"no model folder at {folder}: {GET_GPT2}")
    hf = read_config(folder)
    llama = hf.get("model_type") == "llama"
    try:
        config = llama_config(hf, folder / "config.json") if llama else gpt_config(hf)
    except LslmError as e:
        raise LslmError(f"{folder / 'config.json'} describes no valid model: {e}") from None
    check_model_size(config, folder / "config.json")
    convert = convert_llama_state if llama else convert_state
    state = convert(read_weights(folder), config, folder)
    # The checkpoint replaces the initial weights; a fixed seed keeps building them from
    # touching the caller's random state.
    model = GPT(config, seed=0)
    model.load_state_dict(state)
    return model.eval()


def hub_cache() -> Path:
    """Where ``huggingface_hub`` keeps downloads: $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "hub"


def find_local_gpt2(name: str = "gpt2") -> Path | None:
    """The folder of GPT-2 weights already in the local Hugging Face cache, or None.

    Looks only on disk (``models--gpt2`` or ``models--openai-community--gpt2``), never online.
    """
    for repo in (f"models--{name}", f"models--openai-community--{name}"):
        snapshots = hub_cache() / repo / "snapshots"
        if not snapshots.is_dir():
            continue
        ref = hub_cache() / repo / "refs" / "main"
        candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        try:  # the snapshot "main" points at comes first
            main = snapshots / read_text(ref, 4096, "ref file").strip()
            candidates = [main] + [c for c in candidates if c != main]
        except LslmError:  # no ref (or not a small regular file): newest first will do
            pass
        for snap in candidates:
            if (snap / "config.json").is_file() and any((snap / f).is_file() for f in WEIGHT_FILES):
                return snap
    return None
