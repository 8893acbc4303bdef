"""Llama-format checkpoints: a tiny random LlamaForCausalLM (grouped-query attention on),
saved with save_pretrained, loads into lslm's GPT with the same logits."""

import json

import pytest
import torch

from lslm.errors import LslmError
from lslm.hf import from_pretrained

transformers = pytest.importorskip("transformers")


def tiny_llama(tmp_path, name="llama", **changes):
    settings = dict(vocab_size=96, hidden_size=32, intermediate_size=72, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=40,
                    rope_theta=500.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
    settings.update(changes)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**settings)).eval()
    with torch.no_grad():  # random norm weights too, so a swapped or missing norm shows
        for name_, p in model.named_parameters():
            if "norm" in name_:
                p.uniform_(0.5, 1.5)
    folder = tmp_path / name
    model.save_pretrained(folder)
    return model, folder


@pytest.mark.parametrize("changes", [{}, {"num_key_value_heads": 1}, {"num_key_value_heads": 4},
                                     {"tie_word_embeddings": True}])
def test_llama_logits_match_transformers(tmp_path, changes):
    hf_model, folder = tiny_llama(tmp_path, **changes)
    ours = from_pretrained(folder)
    assert ours.config.position == "rope" and ours.config.norm == "rmsnorm" and ours.config.mlp == "swiglu"
    assert ours.config.kv_heads == changes.get("num_key_value_heads", 2)
    idx = torch.randint(0, 96, (2, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf_model(idx).logits
    got, _ = ours(idx)
    assert (got - want).abs().max().item() < 1e-4
    assert ours.num_params() == sum(p.numel() for p in hf_model.parameters())
    # The cache and rotary positions agree with a full recomputation on the loaded weights too.
    assert torch.equal(ours.generate(idx[:, :5], 12, temperature=0), ours.generate(idx[:, :5], 12, temperature=0, use_cache=False))


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes, words", [
    ({"rope_parameters": {"rope_theta": 500.0, "rope_type": "linear", "factor": 2.0}}, "RoPE scaling 'linear'"),
    ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "RoPE scaling 'dynamic'"),
    ({"attention_bias": True}, "attention_bias"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"num_key_value_heads": 3}, "not divisible by n_kv_head"),
    ({"head_dim": 16}, "head_dim"),
    ({"num_hidden_layers": "2"}, "num_hidden_layers"),
    ({"model_type": "mistral"}, "only GPT-2 and Llama-format"),
])
def test_unsupported_llama_variants_are_one_line_errors(tmp_path, changes, words):
    _, folder = tiny_llama(tmp_path)
    edit_config(folder, **changes)
    with pytest.raises(LslmError, match=words) as e:
        from_pretrained(folder)
    assert "\n" not in str(e.value)


def test_missing_or_mis_shaped_llama_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = tiny_llama(tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    without_k = {k: v for k, v in state.items() if k != "model.layers.1.self_attn.k_proj.weight"}
    save_file(without_k, str(folder / "model.safetensors"))
    with pytest.raises(LslmError, match="lacks model.layers.1.self_attn.k_proj.weight"):
        from_pretrained(folder)
    save_file({k: v for k, v in state.items() if k != "model.norm.weight"}, str(folder / "model.safetensors"))
    with pytest.raises(LslmError, match="lack ln_f.weight"):
        from_pretrained(folder)
    wide = dict(state, **{"model.layers.0.mlp.up_proj.weight": torch.zeros(80, 32)})
    save_file(wide, str(folder / "model.safetensors"))
    with pytest.raises(LslmError, match="shape mismatch: blocks.0.mlp.w_up.weight"):
        from_pretrained(folder)
    odd = dict(state, **{"model.layers.0.self_attn.v_proj.weight": torch.zeros(16, 30)})
    save_file(odd, str(folder / "model.safetensors"))
    with pytest.raises(LslmError, match="do not fit together"):
        from_pretrained(folder)
