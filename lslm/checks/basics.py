"""Exercises of notebooks 01-05: data, attention, the model, training and evaluation."""

from __future__ import annotations

import math

from lslm.checks.registry import exercise


@exercise(
    "uniform_loss",
    "What loss (in nats) does a model get if it spreads its bet evenly over all vocab_size tokens?",
    "cross-entropy is -ln p(correct token), and a uniform guess gives every token p = 1/vocab_size",
)
def _uniform_loss(vocab_size: int) -> float:
    return math.log(vocab_size)


@exercise(
    "param_count",
    "How many parameters does GPTConfig(...) have? Work it out from the shapes, not with num_params().",
    "add the token embedding (vocab_size x n_embd), the position embedding (block_size x n_embd), "
    "n_layer blocks (2 LayerNorms, attention: 4 n_embd^2 weights, MLP: 8 n_embd^2 weights, plus "
    "biases if bias=True) and the final LayerNorm; the LM head is tied to the token embedding",
    rel_tol=0.0,
)
def _param_count(config) -> int:
    from lslm.model import count_params

    return count_params(config)


@exercise(
    "chars_per_token",
    "How many characters of `text` does one token of this tokenizer cover, on average?",
    "divide the number of characters in the text by the number of tokens it becomes: "
    "len(text) / len(tokenizer.encode(text)); a char tokenizer gives exactly 1",
)
def _chars_per_token(text: str, tokenizer) -> float:
    return len(text) / len(tokenizer.encode(text))


@exercise(
    "lr_at_step",
    "With linear warmup then cosine decay, what is the learning rate at `step` for these "
    "lr, min_lr, warmup_iters and max_iters?",
    "during warmup (step < warmup_iters) it is lr * (step + 1) / (warmup_iters + 1); after it, "
    "progress = (step - warmup_iters) / (max_iters - warmup_iters) and the rate is "
    "min_lr + 0.5 * (1 + cos(pi * progress)) * (lr - min_lr)",
)
def _lr_at_step(step: int, lr: float, min_lr: float, warmup_iters: int, max_iters: int) -> float:
    from lslm.train import TrainConfig, lr_at

    config = TrainConfig(max_iters=max_iters, lr=lr, min_lr=min_lr, warmup_iters=warmup_iters)
    return lr_at(step, config)


@exercise(
    "bits_per_char",
    "A character-level model has a loss of `loss` nats per character. "
    "How many bits per character is that?",
    "nats measure with the natural log, bits with log base 2; since ln(x) = log2(x) * ln(2), "
    "divide the loss by ln(2), about 0.693",
)
def _bits_per_char(loss: float) -> float:
    return loss / math.log(2)


@exercise(
    "attention_weight",
    "With causal attention, what weight does query number `query` give key number `key`?",
    "score every key the query may see (itself and earlier positions; later ones get weight 0) "
    "with q·k / √d_k, then take the softmax of those scores: e^score / (sum of e^score)",
)
def _attention_weight(q, k, query: int, key: int) -> float:
    import torch

    from lslm.attention import attention_weights

    weights = attention_weights(torch.as_tensor(q, dtype=torch.float64),
                                torch.as_tensor(k, dtype=torch.float64), causal=True)
    return weights[query, key].item()
