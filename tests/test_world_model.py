"""The story world's base model (lslm.world_model), its cache, the world corpus and the
n-gram baseline (lslm.ngram). Everything runs at tiny sizes: these tests check behaviour,
not quality (benchmarks/bench_world.py measures that)."""

import math
import random
from collections import defaultdict

import numpy as np
import pytest
import torch

import lslm.data
import lslm.world_model as wm
from lslm.checkpoint import checkpoint_file
from lslm.cli import main
from lslm.errors import LslmError
from lslm.ngram import NGramLM
from lslm.tokenizers import train_tokenizer
from lslm.world import SEPARATOR, corpus_text

TINY = wm.with_recipe(stories=80, vocab_size=400, tokenizer_chars=40_000, n_layer=1, n_head=2,
                      n_embd=32, block_size=32, batch_size=4, max_iters=3, warmup_iters=0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    return tmp_path


def trained() -> int:
    return wm.TRAINED["count"]


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------------------ the cache
def test_world_lm_trains_once_then_loads(cache):
    before = trained()
    model, tok = wm.world_lm(TINY)
    assert trained() == before + 1
    folder = wm.cache_folder(TINY)
    assert folder.parent == cache / "models" and checkpoint_file(folder).exists()
    assert TINY.fingerprint() in folder.name
    again, tok2 = wm.world_lm(TINY)
    assert trained() == before + 1  # loaded, not trained
    assert same_weights(model, again) and tok2.state() == tok.state() and not again.training
    # The recipe trained again from nothing gives the same weights: nothing hides in the cache.
    fresh, _ = wm.world_lm(TINY, retrain=True)
    assert trained() == before + 2 and same_weights(model, fresh)


RACE = """
import sys, time
import lslm.world_model as wm
from tests.test_world_model import TINY

train = wm.train_world_lm
def slow_train(*args, **kwargs):  # a long enough build that the other process asks meanwhile
    with open(sys.argv[1], "a") as log:
        log.write("trained\\n")
    time.sleep(2)
    return train(*args, **kwargs)

wm.train_world_lm = slow_train
print(wm.world_lm(TINY)[0].num_params())
"""


def test_two_processes_asking_at_once_train_the_world_model_once(cache):
    import subprocess
    import sys
    from pathlib import Path

    log = cache / "builds.log"
    root = Path(__file__).resolve().parents[1]
    runs = [subprocess.Popen([sys.executable, "-c", RACE, str(log)], cwd=root, stdout=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outs = [run.communicate(timeout=300)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert log.read_text().splitlines() == ["trained"]  # the second one waited, then loaded
    assert outs[0] == outs[1] and int(outs[0]) > 0


def test_a_cache_that_cannot_hold_a_lock_still_builds(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with lslm.data.build_lock(blocker / "models" / "m"):  # no lock file can be made here
        built = True
    assert built


def test_a_corrupt_cache_file_is_trained_again(cache, capsys):
    model, _ = wm.world_lm(TINY)
    file = checkpoint_file(wm.cache_folder(TINY))
    raw = bytearray(file.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64  # damage the middle of the file
    file.write_bytes(bytes(raw))
    before = trained()
    rebuilt, _ = wm.world_lm(TINY)
    assert trained() == before + 1
    assert "training it again" in capsys.readouterr().out
    assert same_weights(model, rebuilt)
    wm.world_lm(TINY)  # and the rebuilt file loads
    assert trained() == before + 1


def test_another_recipe_or_version_gets_its_own_folder(cache, monkeypatch):
    folder = wm.cache_folder(TINY)
    assert wm.cache_folder(wm.with_recipe(**{**TINY.__dict__, "max_iters": 4})) != folder
    with monkeypatch.context() as m:
        m.setattr(wm, "WORLD_MODEL_VERSION", wm.WORLD_MODEL_VERSION + 1)
        assert wm.cache_folder(TINY) != folder
    with monkeypatch.context() as m:  # a changed story generator changes the fingerprint too
        m.setattr(wm, "generator_fingerprint", lambda: "another generator")
        assert wm.cache_folder(TINY) != folder
    assert wm.cache_folder(TINY) == folder


def test_a_checkpoint_of_another_recipe_is_not_loaded(cache):
    wm.world_lm(TINY)
    other = wm.with_recipe(**{**TINY.__dict__, "max_iters": 4})
    target = checkpoint_file(wm.cache_folder(other))
    target.parent.mkdir(parents=True)
    target.write_bytes(checkpoint_file(wm.cache_folder(TINY)).read_bytes())  # planted under the new name
    before = trained()
    wm.world_lm(other)
    assert trained() == before + 1


def test_generator_fingerprint_is_stable():
    assert wm.generator_fingerprint() == wm.generator_fingerprint.__wrapped__()


def test_bad_recipes_are_refused():
    with pytest.raises(LslmError, match="n_layer"):
        wm.with_recipe(n_layer=0)
    with pytest.raises(LslmError, match="WorldRecipe"):
        wm.world_lm({"n_layer": 2})
    with pytest.raises(LslmError, match="position"):
        wm.with_recipe(position="sinusoidal")
    with pytest.raises(LslmError, match="divisible"):
        wm.with_recipe(n_embd=250)


# ----------------------------------------------------------------- tokenizer, writing, judging
def test_a_tokenizer_the_model_was_not_trained_with_is_refused(cache):
    model, tok = wm.world_lm(TINY)
    wm.check_tokenizer(model, tok)
    text = corpus_text(60, seed=99)
    other = train_tokenizer("bpe", text, tok.vocab_size)  # same size, other pieces
    assert other.vocab_size == tok.vocab_size and other.state() != tok.state()
    with pytest.raises(LslmError, match="another tokenizer"):
        wm.check_tokenizer(model, other)
    with pytest.raises(LslmError, match="another tokenizer"):
        wm.write_stories(model, other, ["Once upon a time, there was a cook named Tom."])
    smaller = train_tokenizer("bpe", text, tok.vocab_size - 20)
    with pytest.raises(LslmError, match="vocabulary"):
        wm.check_tokenizer(model, smaller)


def test_a_tiny_model_writes_stories_the_checker_reads(cache):
    model, tok = wm.world_lm(TINY)
    val = lslm.data.split_text(lslm.data.world_text(TINY.stories, TINY.seed)).val
    prompts = wm.first_sentences(val, 3)
    stories = wm.write_stories(model, tok, prompts, max_new_tokens=40, chunk=16, seed=1)
    assert len(stories) == 3
    for prompt, story in zip(prompts, stories):
        assert story.startswith(prompt) and SEPARATOR not in story
    assert stories == wm.write_stories(model, tok, prompts, max_new_tokens=40, chunk=16, seed=1)
    scores = wm.judge(stories)
    assert scores["stories"] == 3
    assert scores["sentences"] >= 0 and 0 <= scores["empty"] <= 3
    for key in ("well_formed", "pronoun_agreement", "on_topic", "consistent"):
        assert math.isnan(scores[key]) or 0 <= scores[key] <= 1
    with pytest.raises(LslmError, match="prompts"):
        wm.write_stories(model, tok, "Once upon a time.")



def test_a_story_cut_by_the_token_budget_loses_only_its_unfinished_sentence():
    opening = "Once upon a time, there was a cook named Tom."
    assert wm._story(opening, " He was happy. He went to the") == opening + " He was happy."
    assert wm._story(opening, ' "Hi!" said Tom. He') == opening + ' "Hi!" said Tom.'
    assert wm._story(opening, " He was happy.\n\nOnce upon") == opening + " He was happy."
    assert wm._story(opening, " He went to the") == opening  # nothing finished: nothing added
    assert wm._story(opening, " He was\nhappy.") == opening + " He was happy."


def test_batched_stories_match_one_at_a_time_and_settings_are_compared(cache):
    model, tok = wm.world_lm(TINY)
    val = lslm.data.split_text(lslm.data.world_text(TINY.stories, TINY.seed)).val
    prompts = wm.first_sentences(val, 5) + ["Once upon a time, there was a cook named Tom."]
    stories = wm.sample_stories(model, tok, prompts, max_new_tokens=12, seed=3)
    assert len(stories) == 6 and all(s.startswith(p) for s, p in zip(stories, prompts))
    assert stories == wm.sample_stories(model, tok, prompts, max_new_tokens=12, seed=3)
    # Greedy decoding does not depend on the batch: each prompt alone gives its own story.
    greedy = wm.sample_stories(model, tok, prompts, max_new_tokens=12, temperature=0)
    for prompt, story in zip(prompts, greedy):
        ids = tok.encode(prompt)
        alone = model.generate(torch.tensor([ids]), 12, temperature=0)[0, len(ids):].tolist()
        assert story == wm._story(prompt, tok.decode(alone))
    assert len({len(tok.encode(p)) for p in prompts}) > 1  # so more than one batch ran
    rows = wm.compare_settings(model, tok, prompts, {"greedy": {"temperature": 0.0},
                                                     "hot": {"temperature": 2.0, "top_p": 0.9}},
                               max_new_tokens=12)
    assert [r["method"] for r in rows] == ["greedy", "hot"]
    assert rows[0]["samples"] == greedy and rows[1]["top_p"] == 0.9
    for row in rows:
        assert row["stories"] == 6 and 0 <= row["distinct_2"] <= 1 and 0 <= row["repeated_3"] <= 1
    with pytest.raises(LslmError, match="prompts"):
        wm.sample_stories(model, tok, [])

def test_judge_scores_true_stories_perfectly_and_skips_the_prompt():
    stories = corpus_text(30, seed=5).strip().split(SEPARATOR)
    scores = wm.judge(stories)
    assert scores["stories"] == 30 and scores["empty"] == 0
    assert scores["well_formed"] == scores["pronoun_agreement"] == scores["on_topic"] == 1.0
    # A story that adds nothing after its prompt is counted as empty, in no rate.
    opening = "Once upon a time, there was a cook named Tom."
    assert wm.judge([opening]) | {} == {**wm.judge([opening]), "empty": 1, "sentences": 0}
    # Only what follows the prompt is judged, and a wrong pronoun there is caught.
    bad = wm.judge([opening + " She was happy."])
    assert bad["sentences"] == 1 and bad["pronouns"] == 1 and bad["pronoun_agreement"] == 0.0
    assert bad["on_topic"] == 1.0  # "she" still means Tom, who was introduced
    with pytest.raises(LslmError, match="blank line"):
        wm.judge(["one story.\n\nanother."])


@pytest.mark.parametrize("length", [2, 9, 33, 40, 71])
def test_sliding_nats_scores_each_token_once_with_its_window(length):
    from lslm.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=0).eval()
    ids = [random.Random(length).randrange(11) for _ in range(length)]
    # Written out slowly: target i is scored by the first window (starts 0, 4, 8, ..., and
    # one more ending at the last token) that reaches it, from that window's start.
    starts = list(range(0, max(1, length - 8), 4))
    if starts[-1] + 8 < length - 1:
        starts.append(length - 1 - 8)
    slow = 0.0
    with torch.no_grad():
        for i in range(1, length):
            s = next(s for s in starts if s + 8 >= i)
            logits = model(torch.tensor([ids[s:i]]))[0][0, -1]
            slow -= torch.log_softmax(logits.double(), -1)[ids[i]].item()
    assert wm.sliding_nats(model, ids, batch_size=3) == pytest.approx(slow, rel=1e-5)
    with pytest.raises(LslmError, match="at least 2"):
        wm.sliding_nats(model, ids[:1])


def test_separators_agree():
    assert wm.SEPARATOR == SEPARATOR


def test_first_sentences():
    text = corpus_text(4, seed=3)
    firsts = wm.first_sentences(text, 4)
    assert all(f.endswith(".") and " named " in f for f in firsts)
    with pytest.raises(LslmError, match="fewer"):
        wm.first_sentences(text, 5)


# -------------------------------------------------------------------------- the world corpus
def test_world_is_a_built_in_corpus(monkeypatch):
    monkeypatch.setattr(lslm.data, "WORLD_STORIES", 12)
    assert lslm.data.load_corpus("world") == corpus_text(12, seed=lslm.data.WORLD_SEED)
    assert "world" in lslm.data.BUILT_IN_CORPORA
    from lslm.cli import BUILT_IN_CORPORA  # the command's copy (it avoids importing torch early)

    assert BUILT_IN_CORPORA == lslm.data.BUILT_IN_CORPORA


def test_lslm_train_on_the_world_corpus(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lslm.data, "WORLD_STORIES", 40)
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--corpus", "world", "--tokenizer", "bpe",
                 "--vocab-size", "400", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                 "--block-size", "32", "--batch-size", "4", "--max-iters", "2",
                 "--eval-interval", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert checkpoint_file(out).exists()
    assert main(["eval", "--ckpt", str(out), "--json"]) == 0  # finds the corpus by its name
    assert '"bits_per_char"' in capsys.readouterr().out


# ---------------------------------------------------------------------------- the n-gram model
def slow_kneser_ney(ids: list[int], vocab: int, order: int):
    """Interpolated Kneser-Ney written out with dicts, following the formula line by line."""
    table = {}  # order k -> {k-gram: count}
    top = defaultdict(int)
    for i in range(len(ids) - order + 1):
        top[tuple(ids[i : i + order])] += 1
    table[order] = dict(top)
    for k in range(1, order):
        before = defaultdict(set)  # k-gram -> the distinct tokens seen right before it
        for i in range(1, len(ids) - k + 1):
            before[tuple(ids[i : i + k])].add(ids[i - 1])
        table[k] = {g: len(s) for g, s in before.items()}
    discounts = []
    for k in range(1, order + 1):
        values = list(table[k].values())
        n1, n2 = values.count(1), values.count(2)
        discounts.append(min(max(n1 / (n1 + 2 * n2) if n1 + n2 else 0.5, 0.1), 0.95))

    def prob(context: list[int], w: int) -> float:
        ctx = tuple(context[-(order - 1) :]) if order > 1 else ()
        p = 1 / vocab
        for k in range(1, len(ctx) + 2):
            h = ctx[len(ctx) - (k - 1) :]
            follow = {g[-1]: c for g, c in table[k].items() if g[:-1] == h}
            total = sum(follow.values())
            if total == 0:
                continue  # never seen: the shorter context's probability stands
            d = discounts[k - 1]
            p = (max(follow.get(w, 0) - d, 0) + d * len(follow) * p) / total
        return p

    return prob, discounts


def skewed_ids(n: int, vocab: int, seed: int) -> list[int]:
    """Token ids with some structure: a repeated phrase among random tokens."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        out += [1, 2, 3] if rng.random() < 0.3 else [rng.choice(range(vocab)) for _ in range(2)]
    return out[:n]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ngram_matches_the_slow_reference(order):
    vocab = 9
    train, test = skewed_ids(500, vocab - 1, 0), skewed_ids(60, vocab, 1)  # id 8 never trained on
    model = NGramLM(vocab, order).fit(train)
    prob, discounts = slow_kneser_ney(train, vocab, order)
    assert np.allclose(model.discounts, discounts)
    expected = [math.log(prob(test[:i], test[i])) for i in range(1, len(test))]
    assert np.allclose(model.log_probs(test), expected, rtol=0, atol=1e-12)
    for context in ([], [1], [1, 2], [8, 8, 8], test[:7]):
        p = model.next_probs(context)
        assert p.sum() == pytest.approx(1.0, abs=1e-12) and (p > 0).all()
        assert np.allclose(p, [prob(list(context), w) for w in range(vocab)], rtol=0, atol=1e-12)
    assert model.nats(test) == pytest.approx(-sum(expected))


def test_ngram_with_a_fixed_discount_and_sampling():
    vocab = 9
    ids = skewed_ids(400, vocab, 2)
    model = NGramLM(vocab, 3, discount=0.5).fit(ids)
    assert model.discounts == [0.5, 0.5, 0.5]
    a = model.generate([1, 2], 30, temperature=0.8, seed=3)
    assert a == model.generate([1, 2], 30, temperature=0.8, seed=3) and a[:2] == [1, 2] and len(a) == 32
    greedy = model.generate([1, 2], 5, temperature=0)
    assert greedy[2] == int(model.next_probs([1, 2]).argmax())
    stopped = model.generate([1], 200, temperature=1.0, seed=0, stop=[2, 3])
    assert stopped[-2:] == [2, 3] and len(stopped) < 201


def test_ngram_refuses_bad_input():
    with pytest.raises(LslmError, match="fit"):
        NGramLM(5, 2).next_probs([1])
    with pytest.raises(LslmError, match="outside"):
        NGramLM(5, 2).fit([1, 2, 7])
    with pytest.raises(LslmError, match="fewer than the order"):
        NGramLM(5, 4).fit([1, 2])
    with pytest.raises(LslmError, match="64-bit"):
        NGramLM(2**20, 4)
    with pytest.raises(LslmError, match="discount"):
        NGramLM(5, 2, discount=0)
