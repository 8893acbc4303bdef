"""A tiny vision-language model: image patches as a prefix to lslm's GPT (issue 20).

The idea that carries today's vision-language models fits on a laptop: cut an image into
patches, turn each patch into a vector the size of a word's embedding (one linear map, plus
a row and a column embedding for where the patch sits), and let the same Transformer read
the image's vectors followed by the words. The GPT is causal, so every word sees every patch
(they come first) and no word sees the words after it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.errors import LslmError, whole_number
from lslm.model import GPT, GPTConfig, NumParams
from lslm.utils import seeded
from lslm.vision import patchify

IGNORE = -100  # a target position the loss skips (the prompt of a question, padding)


class TinyVLM(NumParams, nn.Module):
    """A GPT that reads ``(image_size / patch)²`` image tokens, then text tokens."""

    def __init__(self, config: GPTConfig, image_size: int = 32, patch: int = 8, seed: int | None = None):
        super().__init__()
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
