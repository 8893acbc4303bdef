"""The picture world of issue 20: its truth matches its pixels, patches round-trip, bad input
is a one-line error."""

import pytest
import torch

from lslm import vision as V
from lslm.errors import LslmError


def colour_at(image, x, y):
    return tuple(image[:, y, x].tolist())


def test_every_things_centre_has_its_colour_and_the_caption_names_it():
    for pic in V.pictures(200, seed=1):
        for t in pic.things:
            assert colour_at(pic.image, t.x, t.y) == V.COLOURS[t.colour]
            assert f"{t.size} {t.colour} {t.shape}" in pic.caption
        drawn = {tuple(c) for c in pic.image.flatten(1).T.tolist()}
        assert drawn == {V.BACKGROUND} | {V.COLOURS[t.colour] for t in pic.things}  # nothing else


def test_the_shapes_cover_the_pixels_their_formulas_say():
    for shape, want in (("circle", 3.14), ("square", 4.0), ("triangle", 2.0)):  # area / half-width²
        big = V.draw([V.Thing(shape, "red", "big", 64, 64)], size=128)  # 4x: half-width 28
        area = (big != 255).any(0).sum().item()
        assert area / 28**2 == pytest.approx(want, rel=0.08), shape
    # a triangle points up: wider at its bottom row than at its top row
    tri = (V.draw([V.Thing("triangle", "blue", "big", 16, 16)]) != 255).any(0)
    rows = tri.sum(1)
    assert rows[16 + 7] > rows[16 - 7]


def test_relations_and_answers_follow_the_positions():
    a, b = V.Thing("circle", "red", "small", 5, 5), V.Thing("square", "blue", "big", 5, 25)
    assert V.describe((a, b)) == "a small red circle above a big blue square"
    qa = dict(V.ask((a, b)))
    assert qa["where is the circle?"] == "above the square"
    assert qa["what colour is the square?"] == "blue" and qa["is the circle big or small?"] == "small"
    assert V.relation(V.Thing("circle", "red", "small", 25, 6), V.Thing("square", "blue", "big", 6, 8)) == "right of"


def test_held_out_combinations_never_appear_in_training_and_always_in_held_out():
    train = V.pictures(300, seed=0)
    assert not any((t.colour, t.shape) in V.HELD_OUT for p in train for t in p.things)
    held = V.pictures(50, seed=0, split="held_out")
    assert all(any((t.colour, t.shape) in V.HELD_OUT for t in p.things) for p in held)
    assert [p.caption for p in V.pictures(20, seed=0)] == [p.caption for p in train[:20]]  # repeatable
    assert [p.caption for p in V.pictures(20, seed=0, split="test")] != [p.caption for p in train[:20]]


def test_two_things_never_touch():
    for p in V.pictures(300, seed=2):
        if len(p.things) == 2:
            a, b = p.things
            alone = [(V.draw([t]) != 255).any(0) for t in p.things]
            assert not (alone[0] & alone[1]).any()
            assert a.colour != b.colour and a.shape != b.shape


def test_patches_round_trip_and_read_in_order():
    images = torch.stack([p.image for p in V.pictures(4, seed=3)])
    patches = V.patchify(images, 8)
    assert patches.shape == (4, 16, 8 * 8 * 3)
    assert torch.equal(V.unpatchify(patches, 8, 32, 32), images)
    # patch 5 is row 1, column 1 of the 4x4 grid; its first number is pixel (8, 8)'s red
    assert patches[0, 5, 0] == images[0, 0, 8, 8]
    assert torch.equal(V.patchify(images[0], 4), V.patchify(images, 4)[0])


@pytest.mark.parametrize("call, words", [
    (lambda: V.patchify(torch.zeros(1, 3, 32, 32), 5), "does not cut into 5x5 patches"),
    (lambda: V.patchify(torch.zeros(1, 32, 32), 8), r"\(batch, 3, height, width\)"),
    (lambda: V.patchify(torch.zeros(1, 3, 32, 32, dtype=torch.int64), 8), "uint8 pixels or floats"),
    (lambda: V.encode_text("what colour is the orange thing?"), "'orange' is not a colour in this world"),
    (lambda: V.encode_text("what is a banana?"), "not a word of the picture world"),
    (lambda: V.pictures(3, split="validation"), "split must be"),
    (lambda: V.Thing("hexagon", "red", "big", 1, 1), "hexagon"),
])
def test_bad_input_is_a_one_line_error(call, words):
    with pytest.raises(LslmError, match=words) as e:
        call()
    assert "\n" not in str(e.value)


def test_every_question_and_caption_encodes():
    for p in V.pictures(100, seed=4):
        assert V.encode_text(p.caption)
        for q, a in p.questions:
            assert V.VOCAB[V.encode_text(q)[-1]] == "?" and V.encode_text(a)


# ----------------------------------------------------------------------- the model
from lslm.model import GPTConfig  # noqa: E402
from lslm.vlm import IGNORE, TinyVLM  # noqa: E402


def tiny_vlm(**kw):
    config = GPTConfig(vocab_size=len(V.VOCAB), block_size=32, n_layer=2, n_head=2, n_embd=32, **kw)
    return TinyVLM(config, image_size=32, patch=8, seed=0).eval()


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_words_see_every_patch_and_never_a_later_word(position):
    model = tiny_vlm(position=position)
    pics = V.pictures(2, seed=5)
    images = torch.stack([p.image for p in pics])
    idx = torch.tensor([V.encode_text("what colour is the circle ?")] * 2)
    logits, _ = model(images, idx)
    assert logits.shape == (2, idx.size(1), len(V.VOCAB))
    later = idx.clone()
    later[:, 4:] = 1
    assert torch.allclose(model(images, later)[0][:, :4], logits[:, :4], atol=1e-6)  # the past is untouched
    other = images.flip(0)  # another picture changes every word's prediction, the first one included
    moved = (model(other, idx)[0] - logits).abs().amax(-1)
    assert (moved > 1e-4).all()
    weights = model.features(images, idx, return_attention=True)[1][0]  # layer 0
    n = model.n_image_tokens
    assert weights.shape == (2, 2, n + idx.size(1), n + idx.size(1))
    assert (weights[:, :, n:, :n] > 0).all()  # every word reads every patch
    assert torch.all(weights[:, :, n:, n:].triu(1) == 0)  # and no later word


def test_the_loss_skips_ignored_targets():
    model = tiny_vlm()
    images = torch.stack([p.image for p in V.pictures(2, seed=6)])
    idx = torch.tensor([V.encode_text("is the square big or small ?")] * 2)
    targets = torch.full_like(idx, IGNORE)
    targets[:, -1] = 3
    logits, loss = model(images, idx, targets)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits[:, -1], targets[:, -1]))


@pytest.mark.parametrize("call, words", [
    (lambda m: TinyVLM(m.gpt.config, image_size=30, patch=8), "does not cut into patches of 8"),
    (lambda m: TinyVLM(GPTConfig(vocab_size=30, block_size=16), image_size=32, patch=8), "leave no room for text"),
    (lambda m: m(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), torch.zeros(1, 3, dtype=torch.long)), r"\(batch, 3, 32, 32\)"),
    (lambda m: m(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, dtype=torch.long)), "uint8 pixels"),
    (lambda m: m(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, 20, dtype=torch.long)), "exceed the context"),
])
def test_bad_model_input_is_a_one_line_error(call, words):
    with pytest.raises(LslmError, match=words) as e:
        call(tiny_vlm())
    assert "\n" not in str(e.value)
