"""LoRA (lslm.lora): the adapted layer against its written-out formula, a fresh adapter that
changes nothing, training that moves only A and B, merging, adapter files and their errors."""

import pytest
import torch
import torch.nn as nn

from lslm.errors import LslmError
from lslm.lora import (
    LoRALinear,
    add_lora,
    lora_layers,
    lora_state_dict,
    load_adapter,
    merge_lora,
    read_adapter,
    save_adapter,
    trainable_share,
)
from lslm.model import GPT, GPTConfig

POSITIONS = ["learned", "rope"]


def small_gpt(position: str = "learned", n_embd: int = 32, n_layer: int = 2, seed: int = 0) -> GPT:
    config = GPTConfig(vocab_size=50, block_size=16, n_layer=n_layer, n_head=2, n_embd=n_embd,
                       position=position)
    return GPT(config, seed=seed).eval()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(seed))


def randomise_b(model: nn.Module, seed: int = 2) -> None:
    """B starts at zero; give it values so the adapter changes the model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("position", POSITIONS)
def test_a_fresh_adapter_leaves_the_logits_unchanged(position):
    x = tokens()
    model = small_gpt(position)
    before, _ = model(x)
    add_lora(model, targets=("attn.c_attn", "mlp.c_fc"), r=4, alpha=8)
    after, _ = model(x)
    assert len(lora_layers(model)) == 4
    assert all(torch.count_nonzero(m.lora_B) == 0 and torch.count_nonzero(m.lora_A) > 0
               for m in lora_layers(model).values())
    assert torch.equal(before, after)


@pytest.mark.parametrize("bias", [True, False])
def test_lora_linear_equals_the_written_out_formula(bias):
    g = torch.Generator().manual_seed(0)
    base = nn.Linear(12, 20, bias=bias)
    layer = LoRALinear(base, r=3, alpha=6.0)
    with torch.no_grad():
        layer.lora_A.copy_(torch.randn(3, 12, generator=g))
        layer.lora_B.copy_(torch.randn(20, 3, generator=g))
    x = torch.randn(5, 7, 12, generator=g)
    w = base.weight + (6.0 / 3) * layer.lora_B @ layer.lora_A
    slow = x @ w.T + (base.bias if bias else 0)
    assert torch.allclose(layer(x), slow, atol=1e-5)
    assert torch.allclose(layer.delta_weight(), 2.0 * layer.lora_B @ layer.lora_A)
    assert torch.allclose(layer.merged()(x), slow, atol=1e-5)
    assert not base.weight.requires_grad and layer.lora_A.requires_grad and layer.lora_B.requires_grad


def test_a_starts_kaiming_uniform_and_takes_the_dtype_of_the_base():
    layer = LoRALinear(nn.Linear(64, 16, dtype=torch.float64), r=8)
    assert layer.lora_A.dtype == layer.lora_B.dtype == torch.float64
    assert layer.lora_A.abs().max() <= 1 / 64**0.5  # U(-1/sqrt(in), 1/sqrt(in))
    assert layer.lora_A.std() > 0.5 / (3 * 64) ** 0.5  # and not all tiny


def test_only_the_adapter_trains_and_its_size_is_r_times_in_plus_out():
    model = small_gpt()
    total_before = sum(p.numel() for p in model.parameters())
    add_lora(model, targets=("attn.c_attn", "c_proj"), r=4, alpha=8)
    # Per block: c_attn 32->96, attn.c_proj 32->32, mlp.c_proj 128->32.
    expected = 2 * 4 * ((32 + 96) + (32 + 32) + (128 + 32))
    trainable, total = trainable_share(model)
    assert (trainable, total) == (expected, total_before + expected)
    assert {n.rsplit(".", 1)[1] for n, p in model.named_parameters() if p.requires_grad} == {"lora_A", "lora_B"}

    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)  # all of them, on purpose
    x = tokens()
    for _ in range(3):
        _, loss = model(x[:, :-1], x[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, p in model.named_parameters():
        if name in frozen:
            assert p.grad is None and torch.equal(p, frozen[name]), name
        else:
            assert not torch.equal(p, adapters[name]), name


@pytest.mark.parametrize("position", POSITIONS)
def test_merging_gives_the_same_logits_and_a_plain_model(position):
    x = tokens()
    model = add_lora(small_gpt(position), targets=("attn.c_attn", "mlp.c_fc"), r=4, alpha=8, seed=0)
    randomise_b(model)
    adapted, _ = model(x)
    assert not torch.allclose(adapted, small_gpt(position)(x)[0], atol=1e-3)  # the adapter matters
    merge_lora(model)
    merged, _ = model(x)
    assert torch.allclose(merged, adapted, atol=1e-5)
    assert not lora_layers(model) and not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert model.lm_head.weight is model.wte.weight  # the tie survives
    plain = small_gpt(position)
    plain.load_state_dict(model.state_dict())  # the original names: it loads into a plain GPT
    assert torch.allclose(plain(x)[0], adapted, atol=1e-5)


@pytest.mark.parametrize("position", POSITIONS)
def test_an_adapter_file_round_trips_and_is_small(tmp_path, position):
    x = tokens()
    model = add_lora(small_gpt(position), r=4, alpha=8)
    randomise_b(model)
    expected, _ = model(x)
    file = save_adapter(model, tmp_path / "adapter.pt", meta={"note": "test"})

    fresh = small_gpt(position)  # the same base weights, no LoRA
    load_adapter(fresh, file)
    assert torch.equal(fresh(x)[0], expected)
    assert lora_state_dict(fresh).keys() == lora_state_dict(model).keys()
    assert all(torch.equal(a, b) for a, b in zip(lora_state_dict(fresh).values(), lora_state_dict(model).values()))
    assert trainable_share(fresh)[0] == trainable_share(model)[0]
    assert read_adapter(file)["meta"] == {"note": "test"}

    torch.save(small_gpt(position).state_dict(), tmp_path / "full.pt")
    assert file.stat().st_size * 5 < (tmp_path / "full.pt").stat().st_size
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary file left behind


def test_a_folder_means_its_adapter_pt(tmp_path):
    model = add_lora(small_gpt(), r=2)
    assert save_adapter(model, tmp_path) == tmp_path / "adapter.pt"
    load_adapter(small_gpt(), tmp_path)


@pytest.mark.parametrize("other", [{"n_embd": 48}, {"n_layer": 3}])
def test_an_adapter_for_another_shape_is_refused(tmp_path, other):
    file = save_adapter(add_lora(small_gpt(), r=4), tmp_path / "a.pt")
    target = small_gpt(**other)
    with pytest.raises(LslmError, match="trained for a model of shape") as excinfo:
        load_adapter(target, file)
    message = one_line_error(excinfo)
    assert "2 x attn.c_attn 32->96" in message
    assert ("2 x attn.c_attn 48->144" if "n_embd" in other else "3 x attn.c_attn 32->96") in message
    assert not lora_layers(target)  # nothing changed


def test_missing_corrupt_and_tampered_adapter_files_are_one_line_errors(tmp_path):
    with pytest.raises(LslmError, match="no LoRA adapter file") as excinfo:
        load_adapter(small_gpt(), tmp_path / "missing.pt")
    one_line_error(excinfo)

    file = save_adapter(add_lora(small_gpt(), r=4), tmp_path / "a.pt")
    data = file.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(LslmError, match="not a readable LoRA adapter file") as excinfo:
        load_adapter(small_gpt(), tmp_path / "cut.pt")
    one_line_error(excinfo)

    payload = torch.load(file, weights_only=True)
    payload["tensors"]["blocks.0.attn.c_attn.lora_A"][0, 0] += 1.0  # a changed number
    torch.save(payload, tmp_path / "changed.pt")
    with pytest.raises(LslmError, match="checksum") as excinfo:
        load_adapter(small_gpt(), tmp_path / "changed.pt")
    one_line_error(excinfo)

    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(LslmError, match="not an lslm LoRA adapter") as excinfo:
        load_adapter(small_gpt(), tmp_path / "other.pt")
    one_line_error(excinfo)


def test_loading_into_a_model_that_already_has_lora_is_refused(tmp_path):
    file = save_adapter(add_lora(small_gpt(), r=4), tmp_path / "a.pt")
    with pytest.raises(LslmError, match="already has LoRA"):
        load_adapter(add_lora(small_gpt(), r=4), file)


@pytest.mark.parametrize("kwargs, match", [
    ({"r": 0}, "r \\(the LoRA rank\\) must be a whole number"),
    ({"r": 2.0}, "r \\(the LoRA rank\\) must be a whole number"),
    ({"r": True}, "r \\(the LoRA rank\\) must be a whole number"),
    ({"r": 33}, "r=33 is larger than blocks.0.attn.c_attn's smaller side .*pick r <= 32"),
    ({"alpha": 0}, "alpha must be a positive number"),
    ({"targets": ("attn.c_attn", "attn.q_proj")}, "'attn.q_proj' matches no linear layer.*attn.c_attn, attn.c_proj"),
    ({"targets": ("proj",)}, "'proj' matches no linear layer"),  # names match at a dot
    ({"targets": ("lm_head",)}, "lm_head shares its weight"),
    ({"targets": ()}, "targets must be a list of layer names"),
])
def test_bad_settings_are_one_line_errors_and_change_nothing(kwargs, match):
    model = small_gpt()
    with pytest.raises(LslmError, match=match) as excinfo:
        add_lora(model, **kwargs)
    one_line_error(excinfo)
    assert not lora_layers(model) and all(p.requires_grad for p in model.parameters())


def test_adding_lora_twice_is_refused():
    model = add_lora(small_gpt())
    with pytest.raises(LslmError, match="already has LoRA layers: call merge_lora") as excinfo:
        add_lora(model, targets=("mlp.c_fc",))
    one_line_error(excinfo)
    with pytest.raises(LslmError, match="no LoRA layers to merge"):
        merge_lora(small_gpt())


def test_default_targets_are_the_attention_inputs_and_a_target_matches_at_a_dot():
    assert sorted(lora_layers(add_lora(small_gpt()))) == ["blocks.0.attn.c_attn", "blocks.1.attn.c_attn"]
    assert sorted(lora_layers(add_lora(small_gpt(), targets="c_proj"))) == [
        "blocks.0.attn.c_proj", "blocks.0.mlp.c_proj", "blocks.1.attn.c_proj", "blocks.1.mlp.c_proj"]


def test_a_seed_repeats_a_and_leaves_the_callers_generator_alone():
    state = torch.get_rng_state()
    a = lora_state_dict(add_lora(small_gpt(), seed=3))
    b = lora_state_dict(add_lora(small_gpt(), seed=3))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("position", POSITIONS)
def test_training_under_bfloat16_autocast_reaches_only_the_adapter(position):
    model = add_lora(small_gpt(position), r=4).train()
    x = tokens()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(x[:, :-1], x[:, 1:])
    assert logits.dtype == torch.bfloat16
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(n.endswith(("lora_A", "lora_B")) for n in grads)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.endswith("lora_B"))
