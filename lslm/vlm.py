"""A tiny vision-language model: image patches as a prefix to lslm's GPT (issue 20).

The idea that carries today's vision-language models fits on a laptop: cut an image into
patches, turn each patch into a vector the size of a word's embedding (one linear map, plus
a row and a column embedding for where the patch sits), and let the same Transformer read
the image's vectors followed by the words. The GPT is causal, so every word sees every patch
(they come first) and no word sees the words after it.

* ``train_vlm(pictures, task)``: a ``TinyVLM`` trained to caption pictures, answer
  questions about them, or both; ``sees_images=False`` trains the text-only baseline, which
  gets a blank picture and so can only answer from what the questions themselves give away.
* ``captions`` / ``answers``: greedy words for many pictures at once; ``caption_scores``
  (in ``lslm.vision``) and ``vqa_scores`` judge them against the pictures' truth.
* ``word_attention``: where the model looks, patch by patch, while it writes a word.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.errors import LslmError, shown, whole_number
from lslm.model import GPT, GPTConfig, NumParams
from lslm.utils import evaluating, seeded
from lslm.vision import VOCAB, Picture, caption_scores, encode_text, patchify, question_kind

IGNORE = -100  # a target position the loss skips (the prompt of a question, padding)
PAD, BOS, EOS = (VOCAB.index(w) for w in ("<pad>", "<bos>", "<eos>"))
TASKS = ("caption", "vqa", "both")


class TinyVLM(NumParams, nn.Module):
    """A GPT that reads ``(image_size / patch)²`` image tokens, then text tokens."""

    def __init__(self, config: GPTConfig, image_size: int = 32, patch: int = 8, seed: int | None = None,
                 sees_images: bool = True):
        super().__init__()
        # False: the text-only baseline; every picture it is given reads as a blank one
        self.sees_images = bool(sees_images)
        image_size = whole_number("image_size", image_size, minimum=1)
        patch = whole_number("patch", patch, minimum=1)
        if image_size % patch:
            raise LslmError(f"an image of {image_size} pixels does not cut into patches of {patch}: "
                            "pick a patch size that divides the image size")
        self.image_size, self.patch, self.grid = image_size, patch, image_size // patch
        if self.n_image_tokens >= config.block_size:
            raise LslmError(f"{self.n_image_tokens} image tokens leave no room for text in a context of "
                            f"{config.block_size}: use larger patches or a longer block_size")
        with seeded(seed):
            self.gpt = GPT(config)
            self.patch_embed = nn.Linear(3 * patch * patch, config.n_embd)
            self.row_embed = nn.Embedding(self.grid, config.n_embd)  # where a patch sits: its row ...
            self.col_embed = nn.Embedding(self.grid, config.n_embd)  # ... and its column
            for module in (self.patch_embed, self.row_embed, self.col_embed):
                nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(self.patch_embed.bias)

    @property
    def n_image_tokens(self) -> int:
        return self.grid * self.grid

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(batch, 3, size, size) uint8 pictures -> (batch, patches, n_embd)."""
        want = (3, self.image_size, self.image_size)
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != want:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise LslmError(f"the model reads (batch, {', '.join(map(str, want))}) images, got {got}")
        if images.dtype != torch.uint8:
            raise LslmError(f"images must be uint8 pixels (0-255), as lslm.vision.draw makes them, got {images.dtype}")
        if not self.sees_images:
            images = torch.full_like(images, 255)
        pixels = patchify(images, self.patch).float() / 255
        where = torch.arange(self.n_image_tokens, device=images.device)
        return self.patch_embed(pixels) + self.row_embed(where // self.grid) + self.col_embed(where % self.grid)

    def features(self, images: torch.Tensor, idx: torch.Tensor,
                 return_attention: bool = False) -> tuple[torch.Tensor, list | None]:
        """Hidden states of the image tokens then the text tokens (batch, patches + time, n_embd),
        and with ``return_attention`` each layer's (batch, heads, T, T) weights."""
        gpt = self.gpt
        x = torch.cat((self.image_tokens(images), gpt.wte(idx)), dim=1)
        if x.size(1) > gpt.config.block_size:
            raise LslmError(f"{self.n_image_tokens} image tokens and {idx.size(1)} text tokens exceed the "
                            f"context of {gpt.config.block_size}: shorten the text")
        return gpt.read(x, return_attention=return_attention)

    def forward(self, images: torch.Tensor, idx: torch.Tensor,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, loss)`` for the text positions; ``targets`` equal to ``IGNORE`` are skipped."""
        hidden, _ = self.features(images, idx)
        logits = self.gpt.lm_head(hidden[:, self.n_image_tokens:])
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        return logits, loss


def vlm_config(**overrides) -> GPTConfig:
    """The notebook's model: 2 layers of width 64, 4 heads, RoPE, on the picture world's words."""
    settings = dict(vocab_size=len(VOCAB), block_size=32, n_layer=2, n_head=4, n_embd=64,
                    position="rope", dropout=0.0)
    settings.update(overrides)
    return GPTConfig(**settings)


def examples(pictures: Sequence[Picture], task: str) -> list[tuple[torch.Tensor, list[int], list[int]]]:
    """``(image, prompt ids, answer ids)`` for each caption (prompt: ``<bos>``) or each
    question (prompt: ``<bos>`` and the question); every answer ends with ``<eos>``."""
    if task not in TASKS:
        raise LslmError(f"task must be one of {', '.join(TASKS)}, got {shown(task)}")
    out = []
    for pic in pictures:
        if task in ("caption", "both"):
            out.append((pic.image, [BOS], encode_text(pic.caption) + [EOS]))
        if task in ("vqa", "both"):
            out += [(pic.image, [BOS] + encode_text(q), encode_text(a) + [EOS]) for q, a in pic.questions]
    return out


def batch(rows: Sequence[tuple[torch.Tensor, list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images, ids, targets)`` for ``TinyVLM.forward``: prompt + answer padded to the longest
    row; only the answer's tokens (and its ``<eos>``) are targets."""
    length = max(len(q) + len(a) for _, q, a in rows)
    ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    targets = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    for r, (_, q, a) in enumerate(rows):
        seq = q + a
        ids[r, :len(seq)] = torch.tensor(seq)
        targets[r, len(q) - 1:len(seq) - 1] = torch.tensor(a)
    return torch.stack([image for image, _, _ in rows]), ids, targets


def train_vlm(pictures: Sequence[Picture], task: str = "both", steps: int = 1500, sees_images: bool = True,
              config: GPTConfig | None = None, patch: int = 8, batch_size: int = 64, lr: float = 3e-3,
              seed: int = 0, progress: bool = False, callbacks: list | None = None) -> tuple[TinyVLM, list[float]]:
    """A ``TinyVLM`` trained with the library's loop (``lslm.tasks.common.fit``) on
    ``pictures``' captions, questions or ``"both"`` (then each batch is half of each),
    with the loss on the answers only. Returns the model (in eval mode) and its losses."""
    from lslm.tasks.common import fit

    if not pictures:
        raise LslmError("train_vlm needs some pictures: e.g. lslm.vision.pictures(3000)")
    steps = whole_number("steps", steps, minimum=1)
    batch_size = whole_number("batch_size", batch_size, minimum=2)
    size = pictures[0].image.size(-1)
    model = TinyVLM(config or vlm_config(), image_size=size, patch=patch, seed=seed, sees_images=sees_images)
    pools = [examples(pictures, t) for t in (("caption", "vqa") if task == "both" else (task,))]
    share = batch_size // len(pools)

    def sample(g: torch.Generator):
        rows = [pool[i] for pool in pools for i in torch.randint(len(pool), (share,), generator=g).tolist()]
        return batch(rows)

    losses = fit(model, lambda m, b: m(*b)[1], sample, steps, lr=lr, seed=seed, progress=progress,
                 callbacks=callbacks)
    return model.eval(), losses


@torch.no_grad()
def greedy(model: TinyVLM, images: torch.Tensor, prompts: Sequence[list[int]], max_words: int = 12) -> list[str]:
    """The model's most likely words after each prompt, up to ``<eos>``: one batched pass
    per word for all the prompts of the same length."""
    if images.size(0) != len(prompts):
        raise LslmError(f"greedy takes one prompt per image, got {len(prompts)} for {images.size(0)}")
    out: list[str] = [""] * len(prompts)
    by_length = defaultdict(list)
    for i, p in enumerate(prompts):
        by_length[len(p)].append(i)
    with evaluating(model):
        for rows in by_length.values():
            ids = torch.tensor([prompts[i] for i in rows])
            done = torch.zeros(len(rows), dtype=torch.bool)
            said: list[list[int]] = [[] for _ in rows]
            room = model.gpt.config.block_size - model.n_image_tokens - ids.size(1)
            for _ in range(min(max_words + 1, room)):
                logits, _ = model(images[rows], ids)
                nxt = logits[:, -1].argmax(-1)
                for r in range(len(rows)):
                    if not done[r]:
                        if nxt[r] == EOS:
                            done[r] = True
                        else:
                            said[r].append(int(nxt[r]))
                if done.all():
                    break
                ids = torch.cat((ids, nxt[:, None]), dim=1)
            for r, i in enumerate(rows):
                out[i] = " ".join(VOCAB[t] for t in said[r]).replace(" ?", "?")
    return out


def _images(pictures: Sequence[Picture]) -> torch.Tensor:
    if not pictures:
        raise LslmError("give at least one picture, e.g. lslm.vision.pictures(10, split='test')")
    return torch.stack([p.image for p in pictures])


def captions(model: TinyVLM, pictures: Sequence[Picture]) -> list[str]:
    """The model's caption for each picture (greedy)."""
    return greedy(model, _images(pictures), [[BOS]] * len(pictures))


def answers(model: TinyVLM, pictures: Sequence[Picture], questions: Sequence[str]) -> list[str]:
    """The model's answer to ``questions[i]`` about ``pictures[i]`` (greedy)."""
    if len(questions) != len(pictures):
        raise LslmError(f"answers takes one question per picture, got {len(questions)} for {len(pictures)}")
    return greedy(model, _images(pictures), [[BOS] + encode_text(q) for q in questions])


def vqa_scores(model: TinyVLM, pictures: Sequence[Picture]) -> dict[str, float]:
    """Exact-match accuracy on every question of ``pictures``: ``"all"`` and one per kind
    (colour, shape, size, where)."""
    return _vqa_scores(pictures, lambda pics, qs: answers(model, pics, qs))


def _vqa_scores(pictures: Sequence[Picture], answer) -> dict[str, float]:
    pairs = [(p, q, a) for p in pictures for q, a in p.questions]
    if not pairs:
        raise LslmError("vqa_scores needs pictures with questions, e.g. lslm.vision.pictures(100, split='test')")
    said = answer([p for p, _, _ in pairs], [q for _, q, _ in pairs])
    hits: dict[str, list[bool]] = defaultdict(list)
    for (_, q, a), s in zip(pairs, said):
        hits["all"].append(s == a)
        hits[question_kind(q)].append(s == a)
    return {k: sum(v) / len(v) for k, v in hits.items()}


def caption_report(model: TinyVLM, pictures: Sequence[Picture]) -> dict[str, float]:
    """``lslm.vision.caption_scores`` of the model's captions of ``pictures``."""
    return caption_scores(captions(model, pictures), list(pictures))


@torch.no_grad()
def word_attention(model: TinyVLM, image: torch.Tensor, text: str, word: int) -> torch.Tensor:
    """Where the model looks while it writes word number ``word`` of ``text`` (a caption, or
    a question and its answer): the attention of the position that predicts that word onto
    each image patch, (layers, heads, grid, grid). A row sums to at most 1; the rest of the
    attention went to the text before the word."""
    ids = [BOS] + encode_text(text)
    if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word < len(ids) - 1:
        raise LslmError(f"word must be a position from 0 to {len(ids) - 2} in {shown(text)}")
    with evaluating(model):
        _, attention = model.features(image[None], torch.tensor([ids]), return_attention=True)
    query = model.n_image_tokens + word  # the <bos> (or the word before) predicts word ``word``
    return torch.stack([a[0, :, query, :model.n_image_tokens] for a in attention]).reshape(
        len(attention), -1, model.grid, model.grid)


class PriorBaseline:
    """A model that never sees the picture: for each question, the answer most often right
    for it in the training pictures, and for every picture the most common training caption.
    For answers this is the best any question-only model can learn from those pictures (the
    likeliest answer to each question); for captions, a simple stand-in."""

    def __init__(self, pictures: Sequence[Picture]) -> None:
        if not pictures:
            raise LslmError("PriorBaseline needs the training pictures, e.g. lslm.vision.pictures(3000)")
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for pic in pictures:
            for q, a in pic.questions:
                counts[q][a] += 1
        self.answer_for = {q: max(c, key=c.get) for q, c in counts.items()}
        tally: dict[str, int] = defaultdict(int)
        for pic in pictures:
            tally[pic.caption] += 1
        self.caption = max(tally, key=tally.get)

    def answers(self, questions: Sequence[str]) -> list[str]:
        """The most common training answer to each question ("" for one never asked)."""
        return [self.answer_for.get(q, "") for q in questions]

    def vqa_scores(self, pictures: Sequence[Picture]) -> dict[str, float]:
        """``vqa_scores`` of these guesses."""
        return _vqa_scores(pictures, lambda pics, qs: self.answers(qs))

    def caption_report(self, pictures: Sequence[Picture]) -> dict[str, float]:
        """``caption_scores`` of the same caption for every picture."""
        return caption_scores([self.caption] * len(pictures), list(pictures))
