"""Evaluation metrics, checked against numbers worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from lslm.errors import LslmError
from lslm.evaluate import evaluate
from lslm.model import GPT


def test_a_model_that_knows_nothing_scores_log_vocab(char_data, tiny_config):
    tok, data = char_data
    model = GPT(tiny_config(tok.vocab_size))
    with torch.no_grad():
        model.ln_f.weight.zero_()  # every logit becomes 0: a uniform guess
        model.ln_f.bias.zero_()
    m = evaluate(model, data["val"], tok, per_position=True)
    v = tok.vocab_size
    assert m["loss"] == pytest.approx(math.log(v), rel=1e-6)
    assert m["perplexity"] == pytest.approx(v, rel=1e-5)
    # A char token is one character, so bits per char is the loss in bits.
    assert m["bits_per_char"] == pytest.approx(math.log2(v), rel=1e-6)
    assert len(m["loss_by_position"]) == 16
    assert m["tokens"] == (len(data["val"]) - 1) // 16 * 16


def test_metrics_match_a_plain_loop(char_data, tiny_config):
    tok, data = char_data
    torch.manual_seed(3)
    model = GPT(tiny_config(tok.vocab_size)).eval()
    tokens = data["val"]
    m = evaluate(model, tokens, tok, batch_size=3)
    n = (len(tokens) - 1) // 16
    losses, hit1, hit5 = [], 0, 0
    for i in range(n):
        x = tokens[i * 16 : i * 16 + 16][None]
        y = tokens[i * 16 + 1 : i * 16 + 17]
        logits = model(x)[0][0]
        losses.append(F.cross_entropy(logits, y, reduction="sum").item())
        hit1 += (logits.argmax(-1) == y).sum().item()
        hit5 += sum(y[j].item() in logits[j].topk(5).indices.tolist() for j in range(16))
    assert m["loss"] == pytest.approx(sum(losses) / (n * 16), rel=1e-5)
    assert m["top1_accuracy"] == pytest.approx(hit1 / (n * 16))
    assert m["top5_accuracy"] == pytest.approx(hit5 / (n * 16))
    assert m["top1_accuracy"] <= m["top5_accuracy"]


def test_too_short_split_is_a_clear_error(char_data, tiny_config):
    tok, data = char_data
    with pytest.raises(LslmError, match="block_size is 16"):
        evaluate(GPT(tiny_config(tok.vocab_size)), data["val"][:10], tok)
