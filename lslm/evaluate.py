"""Evaluation: how well does the model predict text it never trained on?

Every token of a split is predicted once, walking the split in windows of
``block_size``. We report:

* loss: mean cross-entropy in nats per token;
* perplexity: exp(loss), "how many tokens the model is choosing between";
* bits per character: total bits over the characters covered, which compares models
  with different tokenizers (a BPE token covers several characters, a char token one);
* top-1 and top-5 accuracy of the next-token prediction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lslm.devices import model_device
from lslm.errors import LslmError
from lslm.utils import evaluating


def top_k_hits(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each target is among the ``k`` tokens with the highest logits (a bool tensor of
    ``targets``' shape). ``k`` larger than the vocabulary counts every target."""
    best = logits.topk(min(k, logits.size(-1)), dim=-1).indices
    return (best == targets.unsqueeze(-1)).any(dim=-1)


@torch.no_grad()
def evaluate(
    model,
    tokens: torch.Tensor,
    tokenizer=None,
    batch_size: int = 32,
    max_tokens: int | None = None,
    per_position: bool = False,
) -> dict:
    """Metrics of ``model`` on a 1-D tensor of token ids.

    ``tokenizer`` is needed for bits per character (to count the characters).
    ``max_tokens`` caps the work on long splits. With ``per_position`` the result also
    holds ``loss_by_position``: the mean loss at each position of the context window.
    """
    block = model.config.block_size
    if max_tokens is not None:
        tokens = tokens[: max_tokens + 1]
    n_windows = (len(tokens) - 1) // block
    if n_windows < 1:
        raise LslmError(
            f"the split has {len(tokens)} tokens but block_size is {block}: "
            "evaluate on a longer text or use a smaller --block-size"
        )
    device = model_device(model)  # the split may sit on the CPU; each batch moves
    usable = tokens[: n_windows * block + 1]
    xs = usable[:-1].view(n_windows, block)
    ys = usable[1:].view(n_windows, block)
    nats = 0.0
    top1 = top5 = 0
    pos_sum = torch.zeros(block, dtype=torch.float64)
    with evaluating(model):
        for i in range(0, n_windows, batch_size):
            x, y = xs[i : i + batch_size].to(device), ys[i : i + batch_size].to(device)
            logits = model(x)[0].float()
            loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, T)
            nats += loss.sum().item()
            pos_sum += loss.sum(dim=0).cpu().double()  # to the CPU first: mps has no float64
            top1 += top_k_hits(logits, y, 1).sum().item()
            top5 += top_k_hits(logits, y, 5).sum().item()
    n = n_windows * block
    out = {
        "loss": nats / n,
        "perplexity": math.exp(nats / n),
        "top1_accuracy": top1 / n,
        "top5_accuracy": top5 / n,
        "tokens": n,
    }
    if tokenizer is not None:
        chars = len(tokenizer.decode(ys.reshape(-1).tolist()))
        out["characters"] = chars
        out["bits_per_char"] = nats / math.log(2) / max(chars, 1)
    if per_position:
        out["loss_by_position"] = (pos_sum / n_windows).tolist()
    return out
