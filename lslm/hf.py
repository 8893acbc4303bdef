"""Load GPT-2 weights saved by Hugging Face into lslm's own ``GPT``.

A Hugging Face checkpoint folder holds ``config.json`` (the shape of the model) and
``model.safetensors`` or ``pytorch_model.bin`` (the tensors). lslm's GPT has the same
architecture as GPT-2, so loading is mostly renaming, with two differences:

* GPT-2 stores its linear layers as ``Conv1D`` modules whose weight is (in, out);
  ``nn.Linear`` keeps (out, in), so those matrices are transposed.
* GPT-2 uses the tanh approximation of GELU (``gelu_new``), which the config records as
  ``gelu_approx="tanh"``.

Nothing here touches the network: get the files first (see ``find_local_gpt2``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig
from lslm.utils import error_summary

# GPT-2's Conv1D layers: (in, out) there, (out, in) in nn.Linear.
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
GET_GPT2 = (
    "on a machine with internet run `huggingface-cli download gpt2` (or "
    "`GPT2LMHeadModel.from_pretrained('gpt2').save_pretrained(DIR)` with transformers) "
    "and copy the folder here"
)


def read_config(folder: Path) -> dict:
    """The folder's ``config.json``, checked to describe a GPT-2 that lslm can run."""
    file = folder / "config.json"
    if not file.is_file():
        raise LslmError(f"{folder} has no config.json: pass a Hugging Face model folder ({GET_GPT2})")
    try:
        hf = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LslmError(f"{file} is not valid JSON ({e}); download the model again") from None
    kind = hf.get("model_type")
    if kind != "gpt2":
        raise LslmError(
            f"{folder} holds a {kind!r} model, but lslm loads only GPT-2 (model_type 'gpt2'): "
            "pass a GPT-2 folder such as gpt2, distilgpt2 or gpt2-medium"
        )
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if eps != 1e-5:
        raise LslmError(f"layer_norm_epsilon is {eps} in {file}, but lslm's LayerNorm uses 1e-5: "
                        "this checkpoint is not a standard GPT-2")
    act = hf.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise LslmError(f"activation_function {act!r} in {file} is not supported; lslm knows "
                        f"{', '.join(ACTIVATIONS)}")
    n_embd = hf.get("n_embd", 768)
    if hf.get("n_inner") not in (None, 4 * n_embd):
        raise LslmError(f"n_inner={hf['n_inner']} in {file}: lslm's MLP is always 4 * n_embd wide")
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

    A ``.bin`` file is a pickle, so it is opened with ``weights_only=True``: only tensors
    and plain containers, never code.
    """
    safe, binary = (folder / name for name in WEIGHT_FILES)
    if safe.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(safe))
        except (SafetensorError, OSError) as e:
            raise LslmError(f"{safe} is not a readable safetensors file ({e}); download it again") from None
    if binary.is_file():
        try:
            state = torch.load(binary, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling refused, truncated zip, random bytes ...
            first = error_summary(e)
            raise LslmError(f"{binary} could not be read safely ({first}); download it again") from None
        if not isinstance(state, dict):
            raise LslmError(f"{binary} does not hold a dict of tensors; it is not a model checkpoint")
        return state
    raise LslmError(f"{folder} has config.json but no {' or '.join(WEIGHT_FILES)}: "
                    "download the weights too")


def convert_state(hf_state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename (and transpose where needed) Hugging Face GPT-2 tensors to ``model``'s names."""
    expected = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in hf_state.items():
        key = name.removeprefix("transformer.")
        # The causal-mask buffers of old checkpoints, and the head tied to wte, are not weights.
        if key == "lm_head.weight" or key.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        key = key.replace("h.", "blocks.", 1) if key.startswith("h.") else key
        if key.endswith(CONV1D):
            tensor = tensor.t()
        if key not in expected:
            raise LslmError(f"the checkpoint has a tensor {name!r} that GPT-2 does not: "
                            "it is not a plain GPT-2 checkpoint")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise LslmError(
                f"shape mismatch: {name} is {tuple(tensor.shape)} in the weights but config.json "
                f"implies {tuple(expected[key].shape)}; the weights and config.json do not belong together"
            )
        out[key] = tensor.to(torch.float32).contiguous()
    missing = [k for k in expected if k not in out and k != "lm_head.weight"]
    if missing:
        raise LslmError(f"the checkpoint lacks {len(missing)} tensors (first: {missing[0]}); "
                        "it is incomplete, download it again")
    out["lm_head.weight"] = out["wte.weight"]  # tied, as in GPT-2
    return out


def from_pretrained(path: str | Path) -> GPT:
    """A ``GPT`` with the weights of the GPT-2 checkpoint folder at ``path``, in eval mode.

    ``path`` is a local folder (for example a Hugging Face cache snapshot). The logits
    match ``transformers.GPT2LMHeadModel`` on the same folder.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise LslmError(f"no model folder at {folder}: {GET_GPT2}")
    hf = read_config(folder)
    state = read_weights(folder)
    # The checkpoint replaces the initial weights; a fixed seed keeps building them from
    # touching the caller's random state.
    model = GPT(gpt_config(hf), seed=0)
    model.load_state_dict(convert_state(state, model))
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
        if ref.is_file():  # the snapshot "main" points at comes first
            main = snapshots / ref.read_text().strip()
            candidates = [main] + [c for c in candidates if c != main]
        for snap in candidates:
            if (snap / "config.json").is_file() and any((snap / f).is_file() for f in WEIGHT_FILES):
                return snap
    return None
