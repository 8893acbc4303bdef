"""Training and judging the tiny vision-language model (issue 20): captions read back, scores
count what they say, batched greedy decoding equals one-at-a-time decoding, the text-only
baseline is the majority table, attention on patches is the model's own."""

from collections import Counter

import pytest
import torch

from lslm import vision as V
from lslm import vlm
from lslm.errors import LslmError


@pytest.fixture(scope="module")
def small_model():
    return vlm.TinyVLM(vlm.vlm_config(n_embd=32, n_head=2), seed=0).eval()


def test_a_picture_has_one_caption_whichever_thing_comes_first():
    a, b = V.Thing("circle", "red", "small", 5, 25), V.Thing("square", "blue", "big", 5, 5)
    assert V.describe((a, b)) == V.describe((b, a)) == "a big blue square above a small red circle"
    c = V.Thing("triangle", "yellow", "small", 25, 6)
    assert V.describe((c, b)) == V.describe((b, c)) == "a big blue square left of a small yellow triangle"
    for pic in V.pictures(200, seed=3):
        assert " below " not in pic.caption and " right of " not in pic.caption


def test_captions_read_back_into_their_things():
    for pic in V.pictures(100, seed=1) + V.pictures(50, seed=1, split="held_out"):
        claim = V.read_caption(pic.caption)
        assert claim is not None
        assert sorted(claim["things"]) == sorted((t.size, t.colour, t.shape) for t in pic.things)
        assert (claim["relation"] is None) == (len(pic.things) == 1)
    for bad in ("", "a red circle", "a small orange circle", "a small red circle near a big blue square",
                "a small red circle above", 7):
        assert V.read_caption(bad) is None


def test_caption_scores_count_each_claim():
    a, b = V.Thing("circle", "red", "small", 5, 5), V.Thing("square", "blue", "big", 5, 25)
    two = V.Picture(V.draw((a, b)), (a, b), V.describe((a, b)), V.ask((a, b)))
    one = V.Picture(V.draw((a,)), (a,), V.describe((a,)), V.ask((a,)))
    assert V.caption_scores([two.caption, one.caption], [two, one]) == {
        "colour": 1.0, "shape": 1.0, "size": 1.0, "relation": 1.0, "count": 1.0, "exact": 1.0, "parsed": 1.0}
    # one wrong colour of three things, the relation wrong, the second thing left out
    got = V.caption_scores(["a small green circle below a big blue square", "a small red circle"], [two, one])
    assert got["colour"] == pytest.approx(2 / 3) and got["shape"] == 1.0 and got["relation"] == 0.0
    assert got["exact"] == 0.5 and got["count"] == 1.0
    got = V.caption_scores(["a small red circle", "nonsense"], [two, one])
    assert got["colour"] == pytest.approx(1 / 3) and got["count"] == 0.0 and got["parsed"] == 0.5
    with pytest.raises(LslmError, match="one caption per picture"):
        V.caption_scores(["a small red circle"], [two, one])


def test_every_question_has_a_kind():
    kinds = Counter(V.question_kind(q) for p in V.pictures(50) for q, _ in p.questions)
    assert set(kinds) == {"colour", "shape", "size", "where"}
    with pytest.raises(LslmError, match="not a question"):
        V.question_kind("how many circles?")


def test_a_batch_targets_only_the_answer_one_step_ahead():
    pics = V.pictures(3, seed=2)
    rows = vlm.examples(pics, "both")
    assert len(rows) == sum(1 + len(p.questions) for p in pics)
    images, ids, targets = vlm.batch(rows)
    assert images.shape == (len(rows), 3, 32, 32) and ids.shape == targets.shape
    for r, (_, q, a) in enumerate(rows):
        assert ids[r, :len(q) + len(a)].tolist() == q + a
        assert (ids[r, len(q) + len(a):] == vlm.PAD).all()
        wanted = torch.full_like(targets[r], vlm.IGNORE)
        wanted[len(q) - 1:len(q) + len(a) - 1] = torch.tensor(a)  # position t predicts token t + 1
        assert torch.equal(targets[r], wanted)
        assert a[-1] == vlm.EOS and q[0] == vlm.BOS
    with pytest.raises(LslmError, match="task must be"):
        vlm.examples(pics, "poem")


def slow_greedy(model, image, prompt, max_words=12):
    ids = list(prompt)
    out = []
    for _ in range(max_words + 1):
        logits, _ = model(image[None], torch.tensor([ids]))
        nxt = int(logits[0, -1].argmax())
        if nxt == vlm.EOS:
            break
        out.append(nxt)
        ids.append(nxt)
    return " ".join(V.VOCAB[t] for t in out).replace(" ?", "?")


def test_batched_greedy_equals_one_picture_at_a_time():
    pics = V.pictures(40, seed=4)
    model, _ = vlm.train_vlm(pics, "both", steps=40, config=vlm.vlm_config(n_embd=32, n_head=2), seed=1)
    questions = [p.questions[k % len(p.questions)][0] for k, p in enumerate(pics)]  # prompts of mixed lengths
    assert len({len(q.split()) for q in questions}) > 1
    with torch.no_grad():
        assert vlm.answers(model, pics, questions) == [
            slow_greedy(model, p.image, [vlm.BOS] + V.encode_text(q)) for p, q in zip(pics, questions)]
        assert vlm.captions(model, pics[:10]) == [slow_greedy(model, p.image, [vlm.BOS]) for p in pics[:10]]


def test_the_text_only_model_gives_the_same_answer_whatever_the_picture(small_model):
    blind = vlm.TinyVLM(vlm.vlm_config(n_embd=32, n_head=2), seed=0, sees_images=False).eval()
    blind.load_state_dict(small_model.state_dict())
    pics = V.pictures(2, seed=5)
    ids = torch.tensor([[vlm.BOS] + V.encode_text("what colour is the circle?")] * 2)
    images = torch.stack([p.image for p in pics])
    with torch.no_grad():
        seen, _ = small_model(images, ids)
        unseen, _ = blind(images, ids)
    assert not torch.allclose(seen[0], seen[1])  # the seeing model reads the pixels ...
    torch.testing.assert_close(unseen[0], unseen[1])  # ... the blind one cannot


def test_the_prior_baseline_is_the_majority_answer_of_each_question():
    train = V.pictures(400, seed=6)
    prior = vlm.PriorBaseline(train)
    by_question = {}
    for p in train:
        for q, a in p.questions:
            by_question.setdefault(q, Counter())[a] += 1
    for q, counts in by_question.items():
        assert counts[prior.answer_for[q]] == max(counts.values())
    assert Counter(p.caption for p in train)[prior.caption] == max(Counter(p.caption for p in train).values())
    test = V.pictures(100, seed=6, split="test")
    scores = prior.vqa_scores(test)
    assert set(scores) == {"all", "colour", "shape", "size", "where"}
    assert 0 < scores["all"] < 1
    # an oracle that answers from the truth scores 1 on every kind
    truth = {(id(p), q): a for p in test for q, a in p.questions}
    pairs = [(p, q) for p in test for q, _ in p.questions]
    oracle = vlm._vqa_scores(test, lambda pics, qs: [truth[(id(p), q)] for p, q in zip(pics, qs)])
    assert len(pairs) > 100 and set(oracle.values()) == {1.0}


def test_training_teaches_colours_that_the_prior_cannot_guess():
    train = V.pictures(600, seed=7)
    # ~200 steps of batch 32 give the prior's caption for every picture; the colours come next
    model, losses = vlm.train_vlm(train, "caption", steps=300, batch_size=32, seed=0)
    assert sum(losses[-10:]) < 0.6 * sum(losses[:10])
    test = V.pictures(100, seed=7, split="test")
    learned = vlm.caption_report(model, test)
    prior = vlm.PriorBaseline(train).caption_report(test)
    assert learned["parsed"] > 0.9
    assert learned["colour"] > prior["colour"] + 0.25, (learned, prior)


def test_word_attention_is_the_models_attention_on_the_patches(small_model):
    pic = V.pictures(1, seed=8)[0]
    text = pic.caption
    w = vlm.word_attention(small_model, pic.image, text, 2)
    n_layer, n_head = small_model.gpt.config.n_layer, small_model.gpt.config.n_head
    assert w.shape == (n_layer, n_head, small_model.grid, small_model.grid)
    ids = torch.tensor([[vlm.BOS] + V.encode_text(text)])
    with torch.no_grad():
        _, attention = small_model.features(pic.image[None], ids, return_attention=True)
    row = attention[1][0, 0, small_model.n_image_tokens + 2]  # the position holding word 1 writes word 2
    torch.testing.assert_close(w[1, 0].flatten(), row[:small_model.n_image_tokens])
    assert (w.sum((-1, -2)) <= 1 + 1e-5).all()
    with pytest.raises(LslmError, match="word must be a position"):
        vlm.word_attention(small_model, pic.image, text, len(text.split()))


@pytest.mark.parametrize("call, words", [
    (lambda: vlm.train_vlm([], "both"), "needs some pictures"),
    (lambda: vlm.train_vlm(V.pictures(2), "both", steps=0), "steps"),
    (lambda: vlm.answers(vlm.TinyVLM(vlm.vlm_config(n_embd=32, n_head=2)), V.pictures(1),
                         ["what colour is the orange thing?"]), "not a colour in this world"),
    (lambda: vlm.PriorBaseline([]), "training pictures"),
    (lambda: vlm.captions(vlm.TinyVLM(vlm.vlm_config(n_embd=32, n_head=2)), []), "at least one picture"),
])
def test_bad_vlm_input_is_a_one_line_error(call, words):
    with pytest.raises(LslmError, match=words) as e:
        call()
    assert "\n" not in str(e.value)


def test_a_things_patches_are_the_ones_its_pixels_fall_in():
    t = V.Thing("square", "red", "small", 12, 20)  # pixels 8..16 across, 16..24 down
    mask = V.patch_mask(t)
    assert mask.shape == (4, 4)
    assert mask.nonzero().tolist() == [[2, 1], [2, 2], [3, 1], [3, 2]]
    for pic in V.pictures(30, seed=9):
        for thing in pic.things:
            tiles = V.patchify(V.draw((thing,)), 8).reshape(4, 4, -1)
            assert torch.equal(V.patch_mask(thing), (tiles != 255).any(-1))
