"""Direct Preference Optimization (DPO; Rafailov et al. 2023), written out plainly.

The data are preference pairs: a prompt ``x``, an answer ``y_w`` that people preferred
(chosen, "won") and one they liked less (``y_l``, rejected, "lost"). Two models read them:
the policy ``πθ`` that we train, and a frozen reference ``π_ref``, usually a copy of the
policy taken before training (the model after supervised fine-tuning). The loss is

    loss = −log σ( β·[(log πθ(y_w|x) − log π_ref(y_w|x)) − (log πθ(y_l|x) − log π_ref(y_l|x))] )

where ``log π(y|x)`` is the summed log-probability of the answer's tokens given the prompt
(``sequence_logprobs``) and σ is the logistic sigmoid.

Read the bracket as rewards. DPO's *implicit reward* of an answer is
``r(x, y) = β·(log πθ(y|x) − log π_ref(y|x))``: how much more likely the policy makes the
answer than the reference did. The loss is ``−log σ(r_w − r_l)``, the Bradley–Terry
likelihood that the chosen answer beats the rejected one: it falls as the *margin*
``r_w − r_l`` grows, so training raises the chosen answer's probability and lowers the
rejected one's, each measured against the reference. No separate reward model and no
sampling are needed, unlike RLHF with PPO.

Why a frozen reference: the rewards are measured from it, so it is the anchor that keeps
the policy near a model that already writes fluent text. DPO solves the same problem as
RLHF's "maximise reward minus β·KL(πθ ‖ π_ref)"; β sets how far the policy may drift (small β:
far; large β: stays close). If the reference moved with the policy, every reward would be
zero and there would be nothing to learn. So the reference gets no gradient (its
log-probabilities are computed under ``torch.no_grad``) and is never stepped: make it with
``reference_copy(policy)`` before training starts.

At the start, policy == reference, so every reward is 0, the margin is 0 and the loss is
log 2 ≈ 0.693 (σ(0) = 1/2).

A step of training::

    reference = reference_copy(policy)
    batch = encode_pairs(pairs, tokenizer.encode, block_size=policy.config.block_size)
    loss, stats = dpo_step(policy, reference, batch, beta=0.1)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.devices import model_device
from lslm.errors import LslmError, real_number, shown, whole_number
from lslm.model import GPT
from lslm.utils import evaluating

__all__ = [
    "PreferencePair",
    "dpo_loss",
    "dpo_step",
    "encode_pairs",
    "reference_copy",
    "sequence_logprobs",
]

BATCH_KEYS = ("chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask")

# σ(0) = 1/2, so the loss before any training (policy == reference) is −log(1/2).
LOSS_AT_START = math.log(2)


def sequence_logprobs(model: nn.Module, ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """The log-probability ``log π(response | prompt)`` of each row, shape (batch,).

    ``ids`` (batch, time) holds prompt then response token ids (then padding);
    ``response_mask`` (batch, time) is True on the response's tokens. The logits at
    position t predict the token at t+1, so the token at t+1 adds
    ``log_softmax(logits[t])[ids[t+1]]`` to the sum when ``response_mask[t+1]`` is True.
    Prompt and padding tokens are read (they are context) but not scored. The first
    position has nothing before it, so it may not be marked.

    Gradients flow as usual; call it under ``torch.no_grad()`` for the reference model.
    """
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.int64:
        raise LslmError(f"ids must be a (batch, time) int64 tensor of token ids, got {_describe(ids)}")
    if (not isinstance(response_mask, torch.Tensor) or response_mask.dtype != torch.bool
            or response_mask.shape != ids.shape):
        raise LslmError(
            f"response_mask must be a bool tensor shaped like ids {tuple(ids.shape)}, got "
            f"{_describe(response_mask)}: True on the response's tokens"
        )
    if ids.size(1) < 2:
        raise LslmError(f"ids {tuple(ids.shape)} has fewer than 2 positions: a response needs a prompt before it")
    if bool(response_mask[:, 0].any()):
        raise LslmError(
            "response_mask marks the first position, which nothing before it predicts: "
            "put at least one prompt token before the response"
        )
    # Position t predicts token t+1: drop the last prediction and the first token.
    next_ids = ids[:, 1:]  # the token each position should predict
    scored = response_mask[:, 1:]
    if isinstance(model, GPT):  # the LM head only where a response token is predicted
        hidden = model.features(ids)[0][:, :-1]
        picked = F.log_softmax(model.lm_head(hidden[scored]).float(), dim=-1)
        token_logprobs = torch.zeros(scored.shape, dtype=picked.dtype, device=picked.device)
        token_logprobs[scored] = picked.gather(-1, next_ids[scored].unsqueeze(-1)).squeeze(-1)
        return token_logprobs.sum(dim=-1)
    logits, _ = model(ids)  # (batch, time, vocab); lslm.model.GPT returns (logits, loss)
    logprobs = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (batch, time-1, vocab)
    token_logprobs = logprobs.gather(-1, next_ids.unsqueeze(-1)).squeeze(-1)  # (batch, time-1)
    return torch.where(scored, token_logprobs, torch.zeros_like(token_logprobs)).sum(dim=-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO loss, averaged over the pairs, and what to watch while training.

    Each argument holds one summed log-probability per pair, shape (batch,). The reference
    values are detached: the reference is a fixed anchor and gets no gradient.

    The dict holds, per pair, ``chosen_reward`` = β·(policy_chosen − ref_chosen),
    ``rejected_reward`` = β·(policy_rejected − ref_rejected) and ``margin`` = chosen − rejected
    reward; and ``accuracy``, the share of pairs whose margin is positive (a 0-d tensor).
    These are detached, for logging.
    """
    beta = real_number("beta", beta)
    if beta <= 0:
        raise LslmError(f"beta must be positive, got {beta:g}: it sets how far the policy may move "
                        "from the reference (0.1 is usual)")
    tensors = {"policy_chosen": policy_chosen, "policy_rejected": policy_rejected,
               "ref_chosen": ref_chosen, "ref_rejected": ref_rejected}
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor) or value.dim() != 1 or not value.is_floating_point():
            raise LslmError(f"{name} must be a 1-D float tensor (one log-probability per pair), "
                            f"got {_describe(value)}")
    if len({tuple(v.shape) for v in tensors.values()}) != 1:
        shapes = ", ".join(f"{name} {tuple(v.shape)}" for name, v in tensors.items())
        raise LslmError(f"the four log-probability tensors must have one value per pair each, got {shapes}")
    if policy_chosen.numel() == 0:
        raise LslmError("dpo_loss got no pairs: give at least one preference pair")

    chosen_reward = beta * (policy_chosen - ref_chosen.detach())
    rejected_reward = beta * (policy_rejected - ref_rejected.detach())
    margin = chosen_reward - rejected_reward
    # −log σ(m), written with logsigmoid: computing σ first would round to 0 (log → −inf)
    # for a very negative margin.
    loss = -F.logsigmoid(margin).mean()
    stats = {
        "chosen_reward": chosen_reward.detach(),
        "rejected_reward": rejected_reward.detach(),
        "margin": margin.detach(),
        "accuracy": (margin.detach() > 0).float().mean(),
    }
    return loss, stats


@dataclass
class PreferencePair:
    """One judgement: for ``prompt``, the answer ``chosen`` was preferred to ``rejected``."""

    prompt: str
    chosen: str
    rejected: str

    def __post_init__(self) -> None:
        for name in ("prompt", "chosen", "rejected"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise LslmError(f"PreferencePair.{name} must be a string, got {shown(value)}")
            if not value.strip():
                raise LslmError(f"PreferencePair.{name} is empty: give some text")
        if self.chosen.strip() == self.rejected.strip():
            raise LslmError(
                f"chosen and rejected answers are identical ({shown(self.chosen.strip())}): "
                "a preference pair needs two different answers"
            )


def encode_pairs(
    pairs: Iterable[PreferencePair],
    encode: Callable[[str], list[int]],
    block_size: int,
    pad_id: int = 0,
) -> dict[str, torch.Tensor]:
    """Token ids and response masks for a batch of preference pairs.

    Each row is the prompt's ids followed by the answer's ids (encoded separately, so the
    answer's tokens are exactly the ones scored), right-padded with ``pad_id`` to the
    longest row of the batch; chosen and rejected rows share that length. Returns
    ``chosen_ids``, ``rejected_ids`` (batch, time) int64 and ``chosen_mask``,
    ``rejected_mask`` (batch, time) bool, True on the answer's tokens only.
    """
    block_size = whole_number("block_size", block_size, minimum=2)
    pad_id = whole_number("pad_id", pad_id, minimum=0)
    pairs = list(pairs)
    if not pairs:
        raise LslmError("encode_pairs got no pairs: give at least one PreferencePair")
    rows: dict[str, list[tuple[list[int], int]]] = {"chosen": [], "rejected": []}
    for i, pair in enumerate(pairs):
        if not isinstance(pair, PreferencePair):
            raise LslmError(f"pair {i} must be a PreferencePair(prompt, chosen, rejected), got {shown(pair)}")
        prompt = _token_ids(encode, pair.prompt, f"pair {i}'s prompt")
        chosen = _token_ids(encode, pair.chosen, f"pair {i}'s chosen answer")
        rejected = _token_ids(encode, pair.rejected, f"pair {i}'s rejected answer")
        longest = len(prompt) + max(len(chosen), len(rejected))
        if longest > block_size:
            raise LslmError(
                f"pair {i} is too long: prompt + chosen is {len(prompt) + len(chosen)} tokens and prompt + "
                f"rejected {len(prompt) + len(rejected)}, but block_size is {block_size}: shorten the "
                "prompt or answers, or raise the context (block_size)"
            )
        rows["chosen"].append((prompt + chosen, len(prompt)))
        rows["rejected"].append((prompt + rejected, len(prompt)))

    time = max(len(ids) for side in rows.values() for ids, _ in side)
    batch = {}
    for side, side_rows in rows.items():
        ids = torch.full((len(side_rows), time), pad_id, dtype=torch.int64)
        mask = torch.zeros((len(side_rows), time), dtype=torch.bool)
        for b, (row, prompt_len) in enumerate(side_rows):
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.int64)
            mask[b, prompt_len : len(row)] = True
        batch[f"{side}_ids"] = ids
        batch[f"{side}_mask"] = mask
    return batch


def dpo_step(
    policy: nn.Module, reference: nn.Module, batch: dict[str, torch.Tensor], beta: float = 0.1,
    nll_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO loss of one batch from ``encode_pairs``, ready for ``loss.backward()``.

    ``nll_weight`` > 0 adds that much of the chosen answers' negative log-likelihood per
    token (as in iterative RPO, Pang et al. 2024): plain DPO may lower the chosen answer's
    probability as long as it lowers the rejected one's faster; this term keeps it up.

    The policy's log-probabilities keep their gradients; the reference's are computed
    under ``torch.no_grad`` with the reference in eval mode (no dropout: a fixed anchor).
    The caller zeroes the gradients and steps the optimizer, which holds only the
    policy's parameters.
    """
    if policy is reference:
        raise LslmError("policy and reference are the same model: the reference must stay frozen, "
                        "so pass a copy made before training (reference_copy(policy))")
    if not isinstance(batch, dict) or any(not isinstance(batch.get(key), torch.Tensor) for key in BATCH_KEYS):
        got = shown(list(batch), 80) if isinstance(batch, dict) else shown(batch)
        raise LslmError(f"batch must be a dict of tensors {', '.join(BATCH_KEYS)} (from encode_pairs), "
                        f"got {got}")
    device = model_device(policy)
    batch = {key: batch[key].to(device) for key in BATCH_KEYS}
    policy_chosen = sequence_logprobs(policy, batch["chosen_ids"], batch["chosen_mask"])
    policy_rejected = sequence_logprobs(policy, batch["rejected_ids"], batch["rejected_mask"])
    with torch.no_grad(), evaluating(reference):
        ref_chosen = sequence_logprobs(reference, batch["chosen_ids"], batch["chosen_mask"])
        ref_rejected = sequence_logprobs(reference, batch["rejected_ids"], batch["rejected_mask"])
    loss, stats = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    nll_weight = real_number("nll_weight", nll_weight, low=0.0)
    if nll_weight:
        tokens = batch["chosen_mask"][:, 1:].sum(1).clamp(min=1)
        nll = (-policy_chosen / tokens).mean()
        stats["chosen_nll"] = nll.detach()
        loss = loss + nll_weight * nll
    return loss, stats


def reference_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to use as the reference: eval mode, no gradients."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def _token_ids(encode: Callable[[str], list[int]], text: str, what: str) -> list[int]:
    ids = list(encode(text))
    if not ids:
        raise LslmError(f"{what} encodes to no tokens: check the tokenizer and the text {shown(text)}")
    if any(isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0 for t in ids):
        raise LslmError(f"{what} must encode to non-negative whole token ids, got {shown(ids)}")
    return [int(t) for t in ids]


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dim()}-D {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"

