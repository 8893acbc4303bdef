"""A generated image world for a tiny vision-language model (issue 20, notebook 17 to come).

Small RGB pictures of one or two shapes, drawn by code (nothing is downloaded), each with
its true description ("a small red circle above a big blue square") and questions with
answers ("what colour is the circle?" -> "red"). Some colour-shape combinations never
appear in the training pictures (``HELD_OUT``), so a test of composition is honest.

* ``draw(things)``: the picture of some ``Thing``s, a (3, size, size) uint8 tensor.
* ``pictures(n, seed, split)``: ``Picture``s with their truth; ``split="held_out"`` gives
  pictures that each hold a held-out combination, ``"train"`` and ``"test"`` none.
* ``patchify`` / ``unpatchify``: a picture as a sequence of flattened patches (the image
  "tokens" of a vision transformer), and back.
* ``encode_text``: words to ids in the world's small vocabulary; a word outside it, such
  as a colour the world does not have, is a one-line ``LslmError``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import torch

from lslm.errors import LslmError, shown, whole_number

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (230, 200, 40), "purple": (140, 60, 180),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 4, "big": 7}  # half-width in pixels on a 32-pixel picture
BACKGROUND = (255, 255, 255)
HELD_OUT = frozenset({("green", "triangle"), ("purple", "circle")})  # never in training pictures
# English colour words the world does not draw: asking about one is an error, not a guess.
OTHER_COLOURS = ("orange", "pink", "black", "white", "brown", "grey", "gray", "cyan", "magenta")


@dataclass(frozen=True)
class Thing:
    """One shape in a picture: what it is, and where its centre sits (pixels)."""

    shape: str
    colour: str
    size: str
    x: int
    y: int

    def __post_init__(self) -> None:
        if self.shape not in SHAPES or self.colour not in COLOURS or self.size not in SIZES:
            raise LslmError(f"a thing is one of {SHAPES} in one of {tuple(COLOURS)}, "
                            f"{' or '.join(SIZES)}; got {self.size} {self.colour} {self.shape}")


@dataclass(frozen=True)
class Picture:
    """A picture and its truth: the things drawn, a caption and questions with answers."""

    image: torch.Tensor  # (3, size, size) uint8
    things: tuple[Thing, ...]
    caption: str
    questions: tuple[tuple[str, str], ...]


def _inside(shape: str, half: int, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Which pixels at offsets (dx, dy) from a centre a shape of half-width ``half`` covers."""
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (dx.abs() <= half) & (dy.abs() <= half)
    # a triangle pointing up, as tall as it is wide: wider the further down a row is
    return (dy >= -half) & (dy <= half) & (2 * dx.abs() <= dy + half)


def draw(things: tuple[Thing, ...] | list[Thing], size: int = 32) -> torch.Tensor:
    """The picture of ``things`` on a white ground, a (3, size, size) uint8 tensor."""
    size = whole_number("size", size, minimum=8, maximum=1024)
    image = torch.tensor(BACKGROUND, dtype=torch.uint8)[:, None, None].repeat(1, size, size)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    scale = size / 32
    for t in things:
        covered = _inside(t.shape, round(SIZES[t.size] * scale), xs - t.x, ys - t.y)
        image[:, covered] = torch.tensor(COLOURS[t.colour], dtype=torch.uint8)[:, None]
    return image


def relation(a: Thing, b: Thing) -> str:
    """Where ``a`` is from ``b``: along the axis on which they are further apart."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dy) >= abs(dx):
        return "above" if dy < 0 else "below"
    return "left of" if dx < 0 else "right of"


def describe(things: tuple[Thing, ...]) -> str:
    """The caption: "a small red circle", or "a small red circle above a big blue square".

    One picture has one caption: of two things, the one above (or left of) the other is
    named first, so a caption says "above" or "left of", never "below" or "right of"."""
    def name(t: Thing) -> str:
        return f"a {t.size} {t.colour} {t.shape}"

    if len(things) == 1:
        return name(things[0])
    a, b = things
    if relation(a, b) in ("below", "right of"):
        a, b = b, a
    return f"{name(a)} {relation(a, b)} {name(b)}"


def question_kind(question: str) -> str:
    """"colour", "shape", "size" or "where": what a question of ``ask`` asks about."""
    for start, kind in (("what colour", "colour"), ("what shape", "shape"), ("is the", "size"),
                        ("where", "where")):
        if question.startswith(start):
            return kind
    raise LslmError(f"{shown(question)} is not a question of the picture world: see lslm.vision.ask")


CAPTION = re.compile(r"a (\w+) (\w+) (\w+)(?: (above|below|left of|right of) a (\w+) (\w+) (\w+))?")


def read_caption(caption: str) -> dict | None:
    """A caption's claims: ``{"things": [(size, colour, shape), ...], "relation": str | None}``,
    or ``None`` when it is not a caption of this world's grammar."""
    m = CAPTION.fullmatch(caption.strip()) if isinstance(caption, str) else None
    if not m:
        return None
    g = m.groups()
    things = [g[0:3]] + ([g[4:7]] if g[3] else [])
    if any(size not in SIZES or colour not in COLOURS or shape not in SHAPES
           for size, colour, shape in things):
        return None
    return {"things": things, "relation": g[3]}


def caption_scores(said: list[str], pictures: list[Picture]) -> dict[str, float]:
    """How many of a model's captions' claims are true, attribute by attribute.

    ``colour``, ``shape``, ``size``: the share of the pictures' things (in caption order)
    whose attribute the caption got right; ``relation``: the share of two-thing pictures
    whose relation it got right; ``count``: pictures with the right number of things;
    ``exact``: captions equal to the truth; ``parsed``: captions in the world's grammar.
    A thing the caption leaves out, or a caption that does not parse, counts as wrong."""
    if len(said) != len(pictures) or not pictures:
        raise LslmError(f"caption_scores takes one caption per picture, got {len(said)} for {len(pictures)}")
    right = {k: 0 for k in ("colour", "shape", "size", "relation", "count", "exact", "parsed")}
    n_things = n_pairs = 0
    for text, pic in zip(said, pictures):
        truth = read_caption(pic.caption)
        claim = read_caption(text) or {"things": [], "relation": None}
        right["parsed"] += bool(claim["things"])
        right["exact"] += text.strip() == pic.caption
        right["count"] += len(claim["things"]) == len(truth["things"])
        for k, (size, colour, shape) in enumerate(truth["things"]):
            n_things += 1
            got = claim["things"][k] if k < len(claim["things"]) else (None, None, None)
            right["size"] += got[0] == size
            right["colour"] += got[1] == colour
            right["shape"] += got[2] == shape
        if truth["relation"]:
            n_pairs += 1
            right["relation"] += claim["relation"] == truth["relation"]
    per = {"colour": n_things, "shape": n_things, "size": n_things, "relation": n_pairs}
    return {k: v / per.get(k, len(pictures)) if per.get(k, len(pictures)) else float("nan")
            for k, v in right.items()}


def ask(things: tuple[Thing, ...]) -> tuple[tuple[str, str], ...]:
    """Questions whose answers the picture decides, with those answers (one word or two)."""
    qa = []
    for t in things:
        qa += [(f"what colour is the {t.shape}?", t.colour),
               (f"what shape is the {t.colour} thing?", t.shape),
               (f"is the {t.shape} big or small?", t.size)]
    if len(things) == 2:
        a, b = things
        qa.append((f"where is the {a.shape}?", f"{relation(a, b)} the {b.shape}"))
    return tuple(qa)


def _random_thing(rng: random.Random, size: int, combos: list[tuple[str, str]]) -> Thing:
    colour, shape = rng.choice(combos)
    kind = rng.choice(tuple(SIZES))
    half = round(SIZES[kind] * size / 32)
    return Thing(shape, colour, kind, rng.randint(half, size - 1 - half), rng.randint(half, size - 1 - half))


def _apart(a: Thing, b: Thing, size: int) -> bool:
    """No overlap, and far enough apart on one axis that "above" or "left of" is clear."""
    reach = round((SIZES[a.size] + SIZES[b.size]) * size / 32) + 2
    return max(abs(a.x - b.x), abs(a.y - b.y)) > reach and abs(abs(a.x - b.x) - abs(a.y - b.y)) > 2


def pictures(n: int, seed: int = 0, split: str = "train", size: int = 32) -> list[Picture]:
    """``n`` pictures of one or two things, the same for the same arguments.

    ``split`` "train" and "test" draw different pictures (different seeds) and never a
    held-out colour-shape combination; "held_out" pictures hold at least one."""
    n = whole_number("n", n, minimum=0)
    if split not in ("train", "test", "held_out"):
        raise LslmError(f'split must be "train", "test" or "held_out", got {shown(split)}')
    rng = random.Random(f"{seed}-{split}")
    every = [(c, s) for c in COLOURS for s in SHAPES]
    seen = [combo for combo in every if combo not in HELD_OUT]
    out = []
    while len(out) < n:
        first = _random_thing(rng, size, sorted(HELD_OUT) if split == "held_out" else seen)
        things: tuple[Thing, ...] = (first,)
        if rng.random() < 0.6:  # a second thing of another colour and shape
            others = [(c, s) for c, s in seen if c != first.colour and s != first.shape]
            second = _random_thing(rng, size, others)
            if not _apart(first, second, size):
                continue
            things = (first, second) if rng.random() < 0.5 else (second, first)
        out.append(Picture(draw(things, size), things, describe(things), ask(things)))
    return out


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(batch, 3, H, W) images (or one (3, H, W)) -> (batch, patches, patch*patch*3): each
    patch flattened row by row, patches in reading order."""
    one = isinstance(images, torch.Tensor) and images.dim() == 3
    images = images[None] if one else images
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.size(1) != 3:
        raise LslmError(f"patchify takes (batch, 3, height, width) images, got "
                        f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.dtype not in (torch.uint8, torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise LslmError(f"images must be uint8 pixels or floats, got {images.dtype}")
    patch = whole_number("patch", patch, minimum=1)
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise LslmError(f"a {h}x{w} image does not cut into {patch}x{patch} patches: pick a patch size "
                        f"that divides {h} and {w} (e.g. {next(p for p in (8, 4, 2, 1) if h % p == 0 == w % p)})")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)
    return x[0] if one else x


def patch_mask(thing: Thing, size: int = 32, patch: int = 8) -> torch.Tensor:
    """(grid, grid) bools: which patches of a ``size`` picture hold some of ``thing``'s pixels."""
    covered = (draw((thing,), size) != 255).any(0)
    grid = size // patch
    return covered.reshape(grid, patch, grid, patch).any(3).any(1)


def unpatchify(patches: torch.Tensor, patch: int, height: int, width: int) -> torch.Tensor:
    """The inverse of ``patchify``: (batch, patches, patch*patch*3) -> (batch, 3, height, width)."""
    b = patches.size(0)
    x = patches.reshape(b, height // patch, width // patch, patch, patch, 3)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, 3, height, width)


SPECIALS = ("<pad>", "<bos>", "<eos>", "?")
VOCAB: tuple[str, ...] = SPECIALS + tuple(sorted(
    set(COLOURS) | set(SHAPES) | set(SIZES)
    | {"a", "the", "above", "below", "left", "right", "of", "what", "colour", "is", "shape", "thing",
       "big", "or", "small", "where"}))


def encode_text(text: str) -> list[int]:
    """Word ids in ``VOCAB`` ("?" is a word of its own); a word outside it is an error."""
    words = text.lower().replace("?", " ?").split()
    ids = []
    for word in words:
        if word not in VOCAB:
            if word in OTHER_COLOURS:
                raise LslmError(f"{word!r} is not a colour in this world: ask about "
                                f"{', '.join(COLOURS)}")
            raise LslmError(f"{shown(word)} is not a word of the picture world: use words like "
                            "'what colour is the circle?'")
        ids.append(VOCAB.index(word))
    return ids
