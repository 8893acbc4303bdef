"""lslm.finetune: examples, the response mask, fine-tuning, greedy answers, a longer context."""

import pytest
import torch
import torch.nn.functional as F

from lslm.errors import LslmError
from lslm.finetune import (IGNORE, Example, complete, encode_example, example_batch, finetune,
                           response_loss, with_context)
from lslm.model import GPT, GPTConfig


def encode(text: str) -> list[int]:
    return [ord(c) % 50 for c in text]


def decode(ids: list[int]) -> str:
    return "".join(chr(i + 50) for i in ids)


def tiny(position: str = "rope", block_size: int = 16) -> GPT:
    return GPT(GPTConfig(vocab_size=50, block_size=block_size, n_layer=2, n_head=2, n_embd=32,
                         position=position), seed=0).eval()


def test_an_example_keeps_where_the_response_starts():
    e = encode_example(encode, "abc", "de", block_size=16)
    assert e.ids == tuple(encode("abcde")) and e.start == 3


def test_an_example_longer_than_the_context_is_refused_in_one_line():
    with pytest.raises(LslmError, match="more than the model's context of 4") as err:
        encode_example(encode, "abcd", "ef", block_size=4)
    assert "\n" not in str(err.value)
    encode_example(encode, "abc", "de", block_size=4)  # 5 tokens: the model reads 4


def test_the_mask_hides_the_prompt_and_the_padding_but_not_the_response():
    long, short = Example((1, 2, 3, 4, 5, 6), 4), Example((7, 8, 9), 1)
    x, y = example_batch([long, short], pad_id=0)
    assert x.tolist() == [[1, 2, 3, 4, 5], [7, 8, 0, 0, 0]]
    # target t is token t+1: only the response's tokens 5, 6 and 8, 9 count
    assert y.tolist() == [[IGNORE, IGNORE, IGNORE, 5, 6], [8, 9, IGNORE, IGNORE, IGNORE]]
    _, y_all = example_batch([long, short], mask_prompt=False)
    assert y_all.tolist() == [[2, 3, 4, 5, 6], [8, 9, IGNORE, IGNORE, IGNORE]]


def test_the_masked_loss_is_the_mean_over_response_tokens_alone():
    model = tiny()
    examples = [Example(tuple(range(1, 9)), 5), Example((3, 9, 27, 4, 11), 2)]
    x, y = example_batch(examples)
    loss = model(x, y)[1].detach()
    logits = model(x)[0]
    by_hand = [-F.log_softmax(logits[b, t], -1)[y[b, t]] for b in range(2) for t in range(x.size(1))
               if y[b, t] != IGNORE]
    assert torch.allclose(loss, torch.stack(by_hand).mean(), atol=1e-6)
    assert response_loss(model, examples) == pytest.approx(loss.item(), abs=1e-5)


def test_the_training_loss_reads_only_the_targets_yet_equals_the_full_one_with_its_gradient():
    from lslm.finetune import _loss

    examples = [Example(tuple(range(1, 9)), 5), Example((3, 9, 27, 4, 11), 2)]
    batch = example_batch(examples)
    full, selected = tiny().train(), tiny().train()
    full(*batch)[1].backward()
    loss = _loss(selected, batch)
    loss.backward()
    assert torch.allclose(loss, full(*batch)[1], atol=1e-6)
    for (name, a), b in zip(full.named_parameters(), selected.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    every = example_batch(examples, mask_prompt=False)  # padding only: the same answer too
    assert torch.allclose(_loss(selected, every), full(*every)[1], atol=1e-6)


def test_finetuning_lowers_the_response_loss_and_leaves_the_model_in_eval_mode():
    model = tiny()
    examples = [encode_example(encode, f"q{i}?", f" a{i % 3}.", 16) for i in range(12)]
    before = response_loss(model, examples)
    losses = finetune(model, examples, steps=60, batch_size=4, lr=3e-3, amp=False)
    assert len(losses) == 60 and not model.training
    assert response_loss(model, examples) < 0.5 * before


def test_complete_is_greedy_and_stops_at_the_stop_string():
    model = tiny()
    ids = encode("hello")
    full = model.generate(torch.tensor([ids]), 8, temperature=0.0)[0, len(ids):].tolist()
    text = decode(full)
    stop = text[3]
    assert complete(model, encode, decode, ["hello"], max_new_tokens=8, stop=stop) == [text.split(stop)[0].strip()]
    with pytest.raises(LslmError, match="leaves no room"):
        complete(model, encode, decode, ["x" * 16])


def test_batched_greedy_continuations_equal_each_prompt_alone():
    model = tiny(block_size=24)
    prompts = ["a", "hello there", "xyz", "a much longer prompt", "q?"]
    alone = []
    for p in prompts:  # model.generate on each prompt by itself, then the same cut
        ids = encode(p)
        room = min(10, 24 - len(ids))
        alone.append(decode(model.generate(torch.tensor([ids]), room, temperature=0.0)[0, len(ids):].tolist()))
    stop = alone[1][4]  # a character one continuation writes: some rows stop early, some never
    want = [a.split(stop)[0].strip() for a in alone]
    assert complete(model, encode, decode, prompts, max_new_tokens=10, stop=stop) == want
    assert complete(model, encode, decode, prompts, max_new_tokens=10, stop=stop, batch_size=2) == want
    # 20 characters + 10 new ones do not fit in 24 beside the padding: those rows finish alone
    assert complete(model, encode, decode, prompts, max_new_tokens=10, stop="\x00") == [a.strip() for a in alone]


def test_left_padding_with_a_key_mask_leaves_a_rope_models_logits_as_they_are_alone():
    model = tiny()
    short, long = [5, 6, 7], [1, 2, 3, 4, 5, 6]
    x = torch.tensor([[0, 0, 0] + short, long])
    mask = torch.tensor([[False] * 3 + [True] * 3, [True] * 6])
    with torch.no_grad():
        both = model.lm_head(model.features(x, key_mask=mask)[0])
        assert torch.allclose(both[0, 3:], model(torch.tensor([short]))[0][0], atol=1e-5)
        assert torch.allclose(both[1], model(torch.tensor([long]))[0][0], atol=1e-5)
        assert torch.isfinite(both).all()  # the pads read themselves, not nothing
        written_out, weights = model.features(x, return_attention=True, key_mask=mask)  # softmax by hand
        assert torch.isfinite(written_out).all() and torch.allclose(model.lm_head(written_out), both, atol=1e-5)
        assert weights[0][0, :, 3:, :3].abs().max() == 0  # no real token reads a pad


def test_a_longer_context_gives_a_rope_model_the_same_logits_on_short_inputs():
    model = tiny(block_size=8)
    longer = with_context(model, 32)
    idx = torch.randint(50, (2, 8), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(idx)[0], longer(idx)[0])
    assert longer(torch.randint(50, (1, 32)))[0].shape == (1, 32, 50)
    assert model.config.block_size == 8  # the original is untouched


def test_a_longer_context_is_refused_for_learned_positions():
    with pytest.raises(LslmError, match="rotary"):
        with_context(tiny(position="learned"), 32)


def test_continue_pretraining_trains_a_copy_and_lowers_perplexity_on_its_text():
    from lslm.finetune import continue_pretraining, text_perplexity
    from lslm.privacy import DPConfig
    from lslm.tokenizers import train_tokenizer

    text = "the cat sat on the mat. " * 40
    tok = train_tokenizer("char", text)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned, losses = continue_pretraining(model, tok, text, steps=60, lr=1e-2, block_size=16, batch_size=8, amp=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    assert len(losses) == 60 and not tuned.training
    assert text_perplexity(tuned, tok, text) < 0.5 * text_perplexity(model, tok, text)
    private, _ = continue_pretraining(model, tok, text, steps=5, block_size=16, batch_size=4, amp=False,
                                      dp=DPConfig(clip=1.0, noise=0.0))
    assert not all(torch.equal(before[k], v) for k, v in private.state_dict().items())
