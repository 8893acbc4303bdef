"""Loading Hugging Face GPT-2 checkpoints: same logits as transformers, clear errors otherwise."""

import json
import os

import pytest
import torch

from lslm.errors import LslmError
from lslm.hf import find_local_gpt2, from_pretrained

transformers = pytest.importorskip("transformers")

TINY = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64)


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(**TINY, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    # Random init leaves biases and LayerNorms at 0/1; perturb them so a mix-up would show.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def saved(hf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    hf_model.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return folder


def hf_logits(model, idx):
    with torch.no_grad():
        return model(idx).logits


def ours_logits(model, idx):
    with torch.no_grad():
        return model(idx)[0]


@pytest.fixture(scope="module")
def idx():
    return torch.randint(0, 100, (3, 64), generator=torch.Generator().manual_seed(1))


def test_safetensors_logits_match_transformers(hf_model, saved, idx):
    ours = from_pretrained(saved)
    assert not ours.training
    assert ours.config.n_layer == 2 and ours.config.block_size == 64 and ours.config.vocab_size == 100
    assert ours.config.gelu_approx == "tanh"
    assert ours.lm_head.weight is ours.wte.weight  # still tied after loading
    expected = hf_logits(hf_model, idx)
    got = ours_logits(ours, idx)
    assert got.shape == expected.shape == (3, 64, 100)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (got - expected).abs().max()
    # Same parameters, counted once each (the head is tied in both).
    assert ours.num_params() == sum(p.numel() for p in hf_model.parameters())


def test_bin_with_old_hub_names_loads_the_same(hf_model, saved, idx, tmp_path):
    """The original gpt2 repo's pytorch_model.bin: no "transformer." prefix, mask buffers inside."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text((saved / "config.json").read_text())
    state = {k.removeprefix("transformer."): v.clone() for k, v in hf_model.state_dict().items()
             if k != "lm_head.weight"}
    for i in range(TINY["n_layer"]):
        state[f"h.{i}.attn.bias"] = torch.ones(64, 64).tril().view(1, 1, 64, 64)
    torch.save(state, folder / "pytorch_model.bin")
    got = ours_logits(from_pretrained(folder), idx)
    assert torch.allclose(got, hf_logits(hf_model, idx), atol=1e-4, rtol=1e-4)


def test_plain_gelu_is_honoured(tmp_path, idx):
    torch.manual_seed(1)
    config = transformers.GPT2Config(**TINY, activation_function="gelu", bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path)
    assert ours.config.gelu_approx == "none"
    assert torch.allclose(ours_logits(ours, idx), hf_logits(model, idx), atol=1e-4, rtol=1e-4)


def copy_folder(src, dst, config_change=None, weights=True):
    dst.mkdir()
    config = json.loads((src / "config.json").read_text())
    config.update(config_change or {})
    (dst / "config.json").write_text(json.dumps(config))
    if weights:
        (dst / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    return dst


def test_clear_errors(saved, tmp_path):
    with pytest.raises(LslmError, match="no model folder"):
        from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LslmError, match="no config.json"):
        from_pretrained(tmp_path / "empty")
    with pytest.raises(LslmError, match="only GPT-2 and Llama-format"):
        from_pretrained(copy_folder(saved, tmp_path / "bert", {"model_type": "bert"}))
    with pytest.raises(LslmError, match="no model.safetensors or pytorch_model.bin"):
        from_pretrained(copy_folder(saved, tmp_path / "noweights", weights=False))
    with pytest.raises(LslmError, match="shape mismatch"):
        from_pretrained(copy_folder(saved, tmp_path / "wide", {"n_embd": 64}))
    with pytest.raises(LslmError, match="layer_norm_epsilon"):
        from_pretrained(copy_folder(saved, tmp_path / "eps", {"layer_norm_epsilon": 1e-6}))
    with pytest.raises(LslmError, match="activation_function"):
        from_pretrained(copy_folder(saved, tmp_path / "relu", {"activation_function": "relu"}))
    broken = copy_folder(saved, tmp_path / "broken", weights=False)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LslmError, match="not a readable safetensors"):
        from_pretrained(broken)
    pickled = copy_folder(saved, tmp_path / "pickled", weights=False)
    torch.save({"evil": object()}, pickled / "pytorch_model.bin")  # weights_only refuses objects
    with pytest.raises(LslmError, match="could not be read safely"):
        from_pretrained(pickled)


def test_find_local_gpt2_reads_only_the_cache(saved, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert find_local_gpt2() is None
    snap = tmp_path / "hf" / "hub" / "models--gpt2" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    assert find_local_gpt2() is None  # a snapshot without weights does not count
    for f in ("config.json", "model.safetensors"):
        (snap / f).write_bytes((saved / f).read_bytes())
    assert find_local_gpt2() == snap
    assert from_pretrained(find_local_gpt2()).config.n_embd == 32


def test_conv1d_exercise_matches_the_real_layout(hf_model, capsys):
    from lslm.checks import check

    real = list(hf_model.transformer.h[0].mlp.c_fc.weight.shape)
    assert real == [32, 128]  # (in, out): the transpose of nn.Linear's (out, in)
    assert check("hf_conv1d_shape", real, n_embd=32)
    assert check("hf_conv1d_shape", [768, 3072])
    assert not check("hf_conv1d_shape", [3072, 768])


def test_from_pretrained_lives_in_hf_and_leaves_the_global_rng_alone(saved):
    import lslm
    from lslm.model import GPT

    assert lslm.from_pretrained is from_pretrained and not hasattr(GPT, "from_pretrained")
    before = torch.random.get_rng_state()
    from_pretrained(saved)
    assert torch.equal(torch.random.get_rng_state(), before)


# ----------------------------------------------------------- hostile folders (issue 14)
@pytest.mark.parametrize("change, message", [
    ({"n_embd": None}, "n_embd is None"),
    ({"n_layer": [2]}, r"n_layer is \[2\]"),
    ({"n_head": 2.0}, "n_head is 2.0"),
    ({"n_positions": -64}, "n_positions is -64"),
    ({"vocab_size": True}, "vocab_size is True"),
    ({"activation_function": ["gelu"]}, "activation_function"),
    ({"layer_norm_epsilon": None}, "layer_norm_epsilon"),
    ({"tie_word_embeddings": "yes"}, "tie_word_embeddings"),
    ({"n_inner": "wide"}, "n_inner"),
    ({"model_type": ["gpt2"]}, "only GPT-2"),
    ({"n_embd": 2**40}, "at most"),
])
def test_config_values_of_the_wrong_type_are_refused(saved, tmp_path, change, message):
    with pytest.raises(LslmError, match=message) as err:
        from_pretrained(copy_folder(saved, tmp_path / "bad", change))
    assert "\n" not in str(err.value)


def test_config_json_that_is_not_an_object_or_too_deep(saved, tmp_path):
    folder = copy_folder(saved, tmp_path / "list")
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(LslmError, match="JSON object"):
        from_pretrained(folder)
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LslmError, match="nested too deeply"):
        from_pretrained(folder)


def test_a_huge_config_is_refused_before_building_the_model(saved, tmp_path):
    # A million layers of width 32 would need 50 GB; a million of width 2 would be small but
    # still do not match the two blocks of weights present.
    with pytest.raises(LslmError, match="limit of 8 GiB"):
        from_pretrained(copy_folder(saved, tmp_path / "deep", {"n_layer": 10**6}))
    with pytest.raises(LslmError, match="blocks"):
        from_pretrained(copy_folder(saved, tmp_path / "thin", {"n_layer": 10**6, "n_embd": 2, "n_head": 1}))
    with pytest.raises(LslmError, match="blocks"):
        from_pretrained(copy_folder(saved, tmp_path / "three", {"n_layer": 3}))


def test_a_bin_holding_non_tensors_is_refused(hf_model, saved, tmp_path):
    folder = copy_folder(saved, tmp_path / "lists", weights=False)
    state = {k: v.tolist() if k.endswith("wte.weight") else v for k, v in hf_model.state_dict().items()}
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(LslmError, match="dict of named tensors"):
        from_pretrained(folder)
    torch.save([1, 2, 3], folder / "pytorch_model.bin")
    with pytest.raises(LslmError, match="dict of named tensors"):
        from_pretrained(folder)


def test_extra_or_mis_shaped_tensors_are_refused(hf_model, saved, tmp_path):
    folder = copy_folder(saved, tmp_path / "odd", weights=False)
    state = dict(hf_model.state_dict())
    state["transformer.h.0.mlp.c_fc.weight"] = torch.zeros(2, 2, 2)  # not 2-D: no transpose to try
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(LslmError, match="shape mismatch"):
        from_pretrained(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero")
def test_only_regular_files_are_read(saved, tmp_path):
    fifo = copy_folder(saved, tmp_path / "fifo")
    (fifo / "config.json").unlink()
    os.mkfifo(fifo / "config.json")
    with pytest.raises(LslmError, match="not a regular file"):
        from_pretrained(fifo)
    for name in ("model.safetensors", "pytorch_model.bin"):
        device = copy_folder(saved, tmp_path / name, weights=False)
        (device / name).symlink_to("/dev/zero")
        with pytest.raises(LslmError, match="not a regular file"):
            from_pretrained(device)
