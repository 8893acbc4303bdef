"""Fine-tuning a language model on (prompt, response) pairs.

Summarization (notebook 13) and instruction tuning (notebook 14) teach a pretrained GPT the
same way: each example is a prompt followed by the response we want, and the model learns to
predict the response's tokens. The loss is *masked to the response*: the prompt's tokens are
read but not predicted (their targets are ``IGNORE``, which cross-entropy skips), so every
gradient step is spent on writing answers rather than on modelling the prompts again.

* ``encode_example`` / ``Example``: the token ids and where the response starts.
* ``example_batch``: a padded (input, target) batch, masked or not.
* ``finetune``: the library's one training loop (``lslm.tasks.common.fit``) on such batches;
  with LoRA adapters only they train (frozen parameters are left out of the optimizer).
* ``response_loss``: mean loss per response token, for held-out examples.
* ``complete``: greedy answers, cut at a stop string.
* ``with_context``: a RoPE model that reads longer inputs than it was pretrained on.
* ``add_token_rows``: room in the embedding for new tokens (a chat template's markers).
* ``continue_pretraining``: a copy of a model trained further on plain text (random
  windows, every token predicted), optionally with DP-SGD (``lslm.privacy``);
  ``text_perplexity`` scores it on held-out text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from lslm.attention import KVCache
from lslm.devices import model_device
from lslm.errors import LslmError, whole_number
from lslm.model import GPT
from lslm.tasks.common import fit

IGNORE = -100  # F.cross_entropy's default ignore_index: a target that costs nothing


@dataclass(frozen=True)
class Example:
    """One prompt and response as token ids: ``ids[:start]`` is the prompt."""

    ids: tuple[int, ...]
    start: int


def encode_example(encode: Callable[[str], list[int]], prompt: str, response: str,
                   block_size: int) -> Example:
    """Tokenize ``prompt`` then ``response`` (each on its own, so the boundary is exact)."""
    if not isinstance(prompt, str) or not isinstance(response, str) or not response:
        raise LslmError("an example needs a prompt and a non-empty response, both strings")
    p, r = encode(prompt), encode(response)
    # +1: the model reads all but the last token, so an example may be one token longer.
    if len(p) + len(r) > block_size + 1:
        raise LslmError(f"this prompt and response take {len(p) + len(r)} tokens, more than the "
                        f"model's context of {block_size}: shorten the prompt or use "
                        f"with_context(model, {len(p) + len(r)}) on a RoPE model")
    return Example(tuple(p + r), len(p))


def example_batch(examples: Sequence[Example], pad_id: int = 0,
                  mask_prompt: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets, right-padded to the longest example.

    Targets are the inputs shifted by one. Padding never counts; with ``mask_prompt`` the
    prompt's tokens do not count either, so the loss is the response's alone.
    """
    width = max(len(e.ids) for e in examples) - 1
    x = torch.full((len(examples), width), pad_id, dtype=torch.long)
    y = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        ids = torch.tensor(e.ids)
        n = len(ids) - 1
        x[row, :n] = ids[:-1]
        y[row, :n] = ids[1:]
        if mask_prompt:  # target t is token t+1: the response's first token is target start-1
            y[row, : e.start - 1] = IGNORE
    return x, y


def _loss(net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The model's mean cross-entropy over the positions that have a target. With the prompt
    masked, most positions have none; a GPT then runs its LM head (one n_embd x vocab matmul
    a position) only where there is one: the same loss for less work."""
    x, y = batch
    keep = y != IGNORE
    if not isinstance(net, GPT) or bool(keep.all()):
        return net(x, y)[1]
    hidden, _ = net.features(x)
    return F.cross_entropy(net.lm_head(hidden[keep]), y[keep])


def finetune(model: torch.nn.Module, examples: Sequence[Example], *, steps: int, batch_size: int = 16,
             lr: float = 1e-3, mask_prompt: bool = True, pad_id: int = 0, seed: int = 0,
             amp: bool = True, callbacks: list | None = None, progress: bool = False) -> list[float]:
    """Train ``model`` in place on batches of ``examples`` drawn at random; returns each step's
    loss. Warmup then cosine decay, AdamW, gradient clipping (``lslm.tasks.common.fit``)."""
    if not examples:
        raise LslmError("there are no examples to fine-tune on: pass at least one Example")
    batch_size = whole_number("batch_size", batch_size, minimum=1)
    model.train()

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        picks = torch.randint(len(examples), (batch_size,), generator=generator).tolist()
        return example_batch([examples[i] for i in picks], pad_id, mask_prompt)

    losses = fit(model, _loss, sample, steps, lr=lr, seed=seed, callbacks=callbacks, amp=amp,
                 progress=progress)
    model.eval()
    return losses


@torch.no_grad()
def response_loss(model: GPT, examples: Sequence[Example], batch_size: int = 32) -> float:
    """Mean cross-entropy per response token (nats) over ``examples``."""
    model.eval()
    device = model_device(model)
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        x, y = (t.to(device) for t in example_batch(examples[i : i + batch_size]))
        keep = y != IGNORE
        logits = model.lm_head(model.features(x)[0][keep])  # only where a response token is
        total += F.cross_entropy(logits.float(), y[keep], reduction="sum").item()
        count += int(keep.sum())
    return total / max(count, 1)


def _text_of(decode: Callable[[list[int]], str], i: int) -> str:
    try:
        return decode([i])
    except Exception:  # an id the tokenizer has no text for (a model row it does not know)
        return ""


@torch.no_grad()
def complete(model: GPT, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
             prompts: Sequence[str], max_new_tokens: int = 48, stop: str = "\n",
             batch_size: int = 32) -> list[str]:
    """The greedy continuation of each prompt, cut before the first ``stop``, stripped.

    A RoPE model writes ``batch_size`` continuations at a time (see ``_greedy_batch``)."""
    model.eval()
    device = model_device(model)
    # A token whose own text holds the stop string ends the answer: greedy decoding can stop
    # there, and what it wrote up to it is the same.
    stop_ids = [i for i in range(model.config.vocab_size) if stop and stop in _text_of(decode, i)]
    rows = []
    for prompt in prompts:
        ids = encode(prompt)
        if len(ids) >= model.config.block_size:
            raise LslmError(f"the prompt takes {len(ids)} tokens and leaves no room in the model's "
                            f"context of {model.config.block_size}: shorten it")
        rows.append(ids)
    written: list[list[int]] = [[] for _ in rows]
    if model.config.position == "rope":  # prompts of similar length share a batch
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        for k in range(0, len(order), batch_size):
            chunk = order[k : k + batch_size]
            for i, got in zip(chunk, _greedy_batch(model, [rows[i] for i in chunk], max_new_tokens, stop_ids)):
                written[i] = got
    else:  # learned positions: padding would move every position, so one prompt at a time
        for i, ids in enumerate(rows):
            room = min(max_new_tokens, model.config.block_size - len(ids))
            written[i] = model.generate(torch.tensor([ids], device=device), room, temperature=0.0,
                                        stop_ids=stop_ids or None)[0, len(ids) :].tolist()
    return [decode(got).split(stop)[0].strip() for got in written]


@torch.no_grad()
def _greedy_batch(model: GPT, rows: list[list[int]], max_new_tokens: int,
                  stop_ids: Sequence[int]) -> list[list[int]]:
    """Greedy continuations of prompts of different lengths in one batch (a RoPE model):
    padded on the left, the padding masked, until every row has written a stop id or has no
    room left. Each row gets the tokens it would get alone."""
    device = model_device(model)
    width = max(len(r) for r in rows)
    rooms = [min(max_new_tokens, model.config.block_size - len(r)) for r in rows]
    steps = min(max(rooms), model.config.block_size - width)
    x = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.bool, device=device)
    for b, r in enumerate(rows):
        x[b, width - len(r) :] = torch.tensor(r)
        mask[b, width - len(r) :] = True
    cache = KVCache(model.config.n_layer)
    out: list[list[int]] = [[] for _ in rows]
    done = [room == 0 for room in rooms]
    stop = set(stop_ids)
    for _ in range(steps):
        next_ids = model.lm_head(model.features(x, cache=cache, key_mask=mask)[0][:, -1]).argmax(-1)
        for b, t in enumerate(next_ids.tolist()):
            if not done[b]:
                out[b].append(t)
                done[b] = t in stop or len(out[b]) == rooms[b]
        if all(done):
            return out
        x = next_ids[:, None]
        mask = torch.cat((mask, torch.ones((len(rows), 1), dtype=torch.bool, device=device)), dim=1)
    # The padding took room a row would have had alone: finish those rows one at a time.
    for b, r in enumerate(rows):
        if not done[b]:
            more = rooms[b] - len(out[b])
            out[b] += model.generate(torch.tensor([r + out[b]], device=device), more, temperature=0.0,
                                     stop_ids=list(stop) or None)[0, len(r) + len(out[b]) :].tolist()
    return out


def with_context(model: GPT, block_size: int) -> GPT:
    """A copy of a RoPE ``model`` that reads up to ``block_size`` tokens.

    Rotary positions have no table of positions to outgrow: attention sees only how far
    apart two tokens are, so the same weights run on longer inputs. Distances beyond those
    seen in pretraining are new to the model, and fine-tuning at the longer length teaches
    them (position interpolation, Chen et al. 2023, is a gentler way to do the same).
    """
    block_size = whole_number("block_size", block_size, minimum=1)
    if model.config.position != "rope":
        raise LslmError("only a model with rotary positions (position='rope') can read past its "
                        f"context of {model.config.block_size}: learned positions stop there")
    longer = GPT(replace(model.config, block_size=block_size))
    longer.load_state_dict(model.state_dict())
    if hasattr(model, "tokenizer_fingerprint"):  # what check_tokenizer reads
        longer.tokenizer_fingerprint = model.tokenizer_fingerprint
    return longer.to(model_device(model)).eval()


def add_token_rows(model: GPT, n: int, seed: int = 0) -> GPT:
    """A copy of ``model`` with ``n`` more token ids (for special tokens added to its tokenizer).

    Each new embedding row starts near the mean of the old ones (a neutral token) plus a
    little seeded noise, a tenth of the rows' spread, so the new tokens differ from each
    other: the model can tell them apart even when the embedding stays frozen (LoRA). Old
    tokens' logits are unchanged; the output layer shares the embedding, so the new tokens
    can be predicted too, and fine-tuning teaches when.
    """
    n = whole_number("n", n, minimum=1)
    grown = GPT(replace(model.config, vocab_size=model.config.vocab_size + n))
    state = dict(model.state_dict())
    old = state["wte.weight"]
    noise = torch.randn(n, old.size(1), generator=torch.Generator().manual_seed(seed))
    state["wte.weight"] = torch.cat([old, old.mean(0) + 0.1 * old.std(0) * noise.to(old)])
    state["lm_head.weight"] = state["wte.weight"]
    grown.load_state_dict(state)
    return grown.to(old.device).eval()


def continue_pretraining(model: GPT, tokenizer, text: str, *, steps: int, lr: float = 1e-3,
                         block_size: int = 32, batch_size: int = 16, seed: int = 0, dp=None,
                         weight_decay: float = 0.01, amp: bool = True,
                         progress: bool = False) -> tuple[GPT, list[float]]:
    """A copy of ``model`` trained ``steps`` more steps on random ``block_size`` windows of
    ``text`` (``model`` itself is left as it was), and each step's loss. With ``dp``, an
    ``lslm.privacy.DPConfig``, the gradient is DP-SGD's. Warmup then cosine decay, AdamW
    (``weight_decay`` on the weight matrices), the library's loop."""
    import copy

    from lslm.data import get_batch
    from lslm.loop import TrainConfig, TrainLoop

    steps = whole_number("steps", steps, minimum=1)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    tuned = copy.deepcopy(model).train()
    generator = torch.Generator().manual_seed(seed)
    device = model_device(tuned)
    cfg = TrainConfig(max_iters=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10,
                      warmup_iters=max(1, steps // 10), weight_decay=weight_decay, beta2=0.99,
                      eval_interval=0, seed=seed, amp=amp, progress=progress)
    get = lambda: get_batch(ids, batch_size, block_size, generator, device)  # noqa: E731
    if dp is None:
        loop = TrainLoop(tuned, _loss, get, cfg, device=str(device), fused=False)
    else:
        from lslm.privacy import DPTrainLoop

        loop = DPTrainLoop(tuned, _loss, get, cfg, dp, seed=seed, device=str(device), fused=False)
    loop.fit()
    return tuned.eval(), loop.history["train_loss"]


def text_perplexity(model: GPT, tokenizer, text: str) -> float:
    """The model's perplexity on ``text`` (``lslm.evaluate.evaluate``: separate windows of
    its block size)."""
    from lslm.evaluate import evaluate

    return evaluate(model, torch.tensor(tokenizer.encode(text), dtype=torch.long))["perplexity"]
