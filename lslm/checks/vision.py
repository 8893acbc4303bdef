"""Exercises of notebook 17: pictures as tokens."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "image_tokens",
    "How many image tokens does an `image_size` x `image_size` picture become when it is cut "
    "into `patch` x `patch` patches?",
    "count the patches along one side of the picture first; the picture is a square grid of them",
)
def _image_tokens(image_size: int, patch: int) -> int:
    from lslm.vision import patchify
    import torch

    return patchify(torch.zeros(1, 3, image_size, image_size), patch).size(1)
