"""The chat template, its special tokens, and room for them in the model."""

import pytest
import torch

from lslm.errors import LslmError
from lslm.finetune import add_token_rows
from lslm.model import GPT, GPTConfig
from lslm.tokenizers import (ChatTemplate, ChatTokenizer, check_chat_tokenizer, tokenizer_from_state,
                             train_tokenizer)

TEXT = "Once upon a time, there was a baker named Tom. Tom had a red kite. " * 40


@pytest.fixture(scope="module")
def base():
    return train_tokenizer("bpe", TEXT, vocab_size=320)


def test_markers_become_single_ids_after_the_base_vocabulary(base):
    chat = ChatTokenizer(base)
    t = chat.template
    text = t.prompt(" Who had a kite?") + t.response(" Tom")
    ids = chat.encode(text)
    assert chat.vocab_size == base.vocab_size + 3
    assert ids[0] == base.vocab_size and ids[-1] == base.vocab_size + 2
    assert ids.count(base.vocab_size + 1) == 1
    assert ids[1:-1] == base.encode(" Who had a kite?") + [base.vocab_size + 1] + base.encode(" Tom")
    assert chat.decode(ids) == text
    assert chat.pieces(text)[0] == "<|user|>"


def test_text_that_merely_looks_like_a_marker_in_pieces_is_not_one(base):
    chat = ChatTokenizer(base)
    assert all(i < base.vocab_size for i in chat.encode("<|user"))


def test_a_chat_tokenizer_round_trips_through_its_state(base):
    chat = ChatTokenizer(base, ChatTemplate("[U]", "[A]", "[E]"))
    again = tokenizer_from_state(chat.state())
    text = "[U] Who?[A] Tom[E]"
    assert again.encode(text) == chat.encode(text) and again.template == chat.template


def test_a_template_without_its_special_tokens_is_refused_in_one_line(base):
    for tokenizer in (base, ChatTokenizer(base, ChatTemplate("[U]", "[A]", "[E]"))):
        with pytest.raises(LslmError, match="no special token") as err:
            check_chat_tokenizer(tokenizer, ChatTemplate())
        assert "\n" not in str(err.value)
    with pytest.raises(LslmError, match="three different"):
        ChatTemplate("<|x|>", "<|x|>", "<|end|>")


def test_new_rows_leave_the_old_tokens_logits_unchanged_and_stay_tied():
    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16, position="rope"), seed=0)
    grown = add_token_rows(model, 3)
    idx = torch.randint(40, (2, 10), generator=torch.Generator().manual_seed(1))
    assert grown.config.vocab_size == 43
    assert torch.allclose(grown(idx)[0][..., :40], model(idx)[0], atol=1e-6)
    assert grown.lm_head.weight is grown.wte.weight
    new = grown.wte.weight[40:].detach()
    mean, spread = model.wte.weight.mean(0).detach(), model.wte.weight.std(0).detach()
    assert ((new - mean).abs() < spread).float().mean() > 0.95  # near the mean: a neutral token
    assert torch.cdist(new, new).add(torch.eye(3)).min() > 0  # but each its own
    assert grown(torch.tensor([[41, 42]]))[0].shape == (1, 2, 43)  # the new ids are usable
