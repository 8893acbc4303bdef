"""The translation task: the made-up language pair, its splits, loaders, and a trained model."""

import re
from collections import Counter

import pytest
import torch

from lslm.errors import LslmError
from lslm.seq2seq import Seq2Seq, Seq2SeqConfig
from lslm.tasks import translation as tr
from lslm.tasks.common import fit
from lslm.tasks.metrics import chrf, corpus_bleu, exact_match

# ----------------------------------------------------------------------------- the languages


@pytest.mark.parametrize(
    "english, vorlan",
    [
        ("the big dog sees a small cat", "hunu gran la miso piki un vidas ek vi"),
        ("a happy big dog sees anna", "hunu gran felu un anna vidas ek vi"),  # two adjectives: mirrored
        ("omar likes li", "omar li amas ek vi"),
        ("the child helps an old red farmer", "nino la agro roso vesi un jutas ek vi"),
        # plural: -j on the noun and its adjectives; the verb says one or many, present or past
        ("the big dogs saw an old cat", "hunuj granj la miso vesi un vidin ek vi"),
        ("some children watch the ants", "ninoj kel formij la rigardan ek vi"),
        ("anna fed some young owls", "anna strigoj junaj kel nutris ek vi"),
        ("some quiet foxes followed li", "vulpoj silaj kel li sekin ek vi"),
    ],
)
def test_translate_by_hand(english, vorlan):
    assert tr.translate(english) == vorlan


def test_every_evidential_and_no_other():
    assert [tr.translate("omar likes li", e) for e in tr.EVIDENTIALS] == [
        "omar li amas ek vi", "omar li amas nu sa", "omar li amas nu le", "omar li amas nu pe"]
    assert tr.USUAL_EVIDENTIAL == max(tr.EVIDENTIALS, key=tr.EVIDENTIALS.get)
    # The trap that greedy decoding falls into: "nu" starts more endings than "ek", but
    # "ek vi" is likelier than any one "nu" ending.
    firsts = Counter()
    for e, n in tr.EVIDENTIALS.items():
        firsts[e.split()[0]] += n
    assert firsts["nu"] > firsts["ek"] and all(tr.EVIDENTIALS["ek vi"] > n for e, n in tr.EVIDENTIALS.items() if e != "ek vi")
    with pytest.raises(LslmError, match="unknown evidential"):
        tr.translate("omar likes li", "ek sa")


def test_alignment_points_at_the_translated_word():
    for english in ("the big dog sees a small cat", "a happy big dog sees anna", "li calls the bird",
                    "the old red dogs like an eagle"):
        source, target = english.split(), tr.translate(english).split()
        links = tr.alignment(english)
        assert len(links) == len(target) - 2  # the evidential translates no English word
        # Each Vorlan word is its English word's dictionary entry, with any plural ending added.
        assert all(target[i].startswith(tr.LEXICON[source[j]].removesuffix("j")) for i, j in enumerate(links))
    # The verb moves from the middle to the end; adjectives swap with their noun.
    assert tr.alignment("the big dog sees a small cat") == [2, 1, 0, 6, 5, 4, 3]


@pytest.mark.parametrize(
    "sentence, words",
    [
        ("dog sees the cat", "name or an article"),
        ("the dog the cat", "expected a verb"),
        ("the big sees the cat", "expected a noun"),
        ("the big old red dog sees li", "expected a noun"),  # three adjectives: too many
        ("anna sees li today", "goes on after the object"),
        ("", "name or an article"),
        ("a old dog sees li", "'an' before a vowel"),
        ("anna sees an big dog", "'an' before a vowel"),
        ("a dogs see li", "with the plural 'dogs'"),
        ("some dog sees li", "with the singular 'dog'"),
        ("the dogs sees li", "plural subject takes 'see'"),
        ("anna see li", "singular subject takes 'sees'"),
    ],
)
def test_sentences_outside_the_grammar_are_explained(sentence, words):
    with pytest.raises(LslmError, match=words):
        tr.translate(sentence)


def test_word_by_word_baseline_keeps_english_order():
    assert tr.word_by_word("the big dog sees anna") == "la gran hunu vidas anna"
    assert sorted(tr.word_by_word("the big dog sees anna").split()) == sorted(
        tr.translate("the big dog sees anna").split()[:-2]
    )
    # A dictionary does not know agreement: "big" is "gran" alone, "granj" beside a plural.
    assert tr.word_by_word("the big dogs saw anna") == "la gran hunuj vidis anna"


# ----------------------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def splits():
    return tr.make_splits(n_train=1000, n_val=50, n_test=100, seed=0)


def test_splits_are_seeded_and_sized(splits):
    assert {k: len(v) for k, v in splits.items()} == {"train": 1000, "val": 50, "test": 100}
    assert tr.make_splits(n_train=1000, n_val=50, n_test=100, seed=0) == splits
    assert tr.make_splits(n_train=1000, n_val=50, n_test=100, seed=1)["train"] != splits["train"]
    for pairs in splits.values():
        # The ground truth: the rules' translation, ending in one of the evidentials.
        assert all(t in {tr.translate(s, e) for e in tr.EVIDENTIALS} for s, t in pairs)
    assert all(t == tr.translate(s) for s, t in splits["test"])  # the likeliest ending only


def test_training_endings_come_as_often_as_translators_choose_them():
    train = tr.make_splits(n_train=4000, n_val=50, n_test=50, seed=0)["train"]
    counts = Counter(" ".join(t.split()[-2:]) for _, t in train)
    total = sum(tr.EVIDENTIALS.values())
    for evidential, n in tr.EVIDENTIALS.items():
        assert abs(counts[evidential] / len(train) - n / total) < 0.03
    same = tr.make_splits(n_train=300, n_val=10, n_test=10, seed=0, vary=False)
    assert all(t == tr.translate(s) for pairs in same.values() for s, t in pairs)


def test_generated_articles_agree_with_the_next_word():
    """ "a" before a consonant, "an" before a vowel: after the adjectives are placed."""
    sentences = [s for pairs in tr.make_splits(n_train=3000, n_val=50, n_test=200, seed=3).values() for s, _ in pairs]
    seen = Counter()
    for sentence in sentences:
        words = sentence.split()
        for det, following in zip(words, words[1:]):
            if det in ("a", "an"):
                assert det == ("an" if following[0] in "aeiou" else "a"), sentence
                seen[det] += 1
        tr.parse(sentence)  # and the grammar accepts it
    assert seen["a"] > 100 and seen["an"] > 100  # both spellings occur, after nouns and adjectives
    assert any(re.search(r"\ban (old|angry) \w+ (dog|cat|bird|horse|child|teacher|farmer|fox)\b", s)
               for s in sentences)


def test_test_split_is_made_of_unseen_combinations(splits):
    held = tr.held_out_pairs()
    assert len(held) == len(tr.NOUNS)
    sentences = {name: {s for s, _ in pairs} for name, pairs in splits.items()}
    assert not (sentences["test"] & (sentences["train"] | sentences["val"]))
    assert not sentences["train"] & sentences["val"]
    assert all(tr.unseen_pairs_in(s) for s in sentences["test"])
    assert not any(tr.unseen_pairs_in(s) for s in sentences["train"] | sentences["val"])
    # ... but each word of a held-out pair is seen in training, with other partners.
    train_words = {w for s in sentences["train"] for w in s.split()}
    assert set(tr.ADJECTIVES) | set(tr.NOUNS) | set(tr.PLURALS) | set(tr.VERB_FORMS) <= train_words


def test_too_many_sentences_is_explained():
    with pytest.raises(LslmError, match="at least one"):
        tr.make_splits(n_train=10, n_val=0, n_test=10)


# ----------------------------------------------------------------------------- tokens and batches


def test_word_vocab_specials_unknowns_and_round_trip():
    vocab = tr.WordVocab.from_sentences(["the dog sees the cat"])
    assert vocab.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert vocab.vocab_size == 4 + 4
    ids = vocab.encode("the cat sees a dog")
    assert ids[3] == vocab.unk_id
    assert vocab.decode(ids) == "the cat sees <unk> dog"
    assert vocab.decode([vocab.bos_id, *vocab.encode("the dog"), vocab.eos_id, *vocab.encode("cat")]) == "the dog"


def test_encode_pairs_pads_and_shifts():
    # Targets of 3 and 8 words (the second: "hunu gran la miso la vidas ek vi").
    pairs = [("anna sees li", "anna li vidas"), ("the big dog sees the cat", tr.translate("the big dog sees the cat"))]
    src_v = tr.WordVocab.from_sentences(s for s, _ in pairs)
    tgt_v = tr.WordVocab.from_sentences(t for _, t in pairs)
    batch = tr.encode_pairs(pairs, src_v, tgt_v, block_size=10)
    assert batch["src"].shape == (2, 7) and batch["tgt_in"].shape == batch["tgt_out"].shape == (2, 9)
    assert batch["src"][0].tolist() == src_v.encode("anna sees li") + [2, 0, 0, 0]
    assert batch["tgt_in"][0].tolist() == [1] + tgt_v.encode("anna li vidas") + [0] * 5
    assert batch["tgt_out"][0].tolist() == tgt_v.encode("anna li vidas") + [2] + [0] * 5
    # The decoder input is the target shifted right by one: it reads word i to predict i+1.
    assert torch.equal(batch["tgt_in"][1, 1:], batch["tgt_out"][1, :-1])
    with pytest.raises(LslmError, match="raise block_size"):
        tr.encode_pairs(pairs, src_v, tgt_v, block_size=6)


# ----------------------------------------------------------------------------- real data files

TSV_CASES = {
    "empty file": ("", "holds no rows"),
    "row missing a column": ("the dog sees li\thunu la li vidas\nanna sees li\n", "line 2: expected 2"),
    "empty target": ("the dog sees li\t \n", "target sentence is empty"),
    "too long for the model": ("a b c d e f g h i j k\tx\n", "has 11 words but the model fits 9"),
}


@pytest.fixture
def bad_tsv(tmp_path, request):
    content, _ = TSV_CASES[request.param]
    path = tmp_path / "pairs.tsv"
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("bad_tsv", list(TSV_CASES), indirect=True)
def test_bad_tsv_files_are_explained(bad_tsv, request):
    words = TSV_CASES[request.node.callspec.params["bad_tsv"]][1]
    with pytest.raises(LslmError, match=words):
        tr.load_tsv(bad_tsv, block_size=10)


def test_tsv_round_trip(tmp_path, splits):
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in splits["val"]), encoding="utf-8")
    assert tr.load_tsv(path, block_size=12) == splits["val"]
    with pytest.raises(LslmError, match="no file"):
        tr.load_tsv(tmp_path / "missing.tsv")


@pytest.fixture
def parallel_files(tmp_path):
    def write(source_lines: list[str], target_lines: list[str]):
        src, tgt = tmp_path / "train.en", tmp_path / "train.vo"
        src.write_text("".join(line + "\n" for line in source_lines), encoding="utf-8")
        tgt.write_text("".join(line + "\n" for line in target_lines), encoding="utf-8")
        return src, tgt

    return write


def test_parallel_files(parallel_files):
    src, tgt = parallel_files(["anna sees li", "li calls omar"], ["anna li vidas", "li omar vokas"])
    assert tr.load_parallel(src, tgt) == [("anna sees li", "anna li vidas"), ("li calls omar", "li omar vokas")]


@pytest.mark.parametrize(
    "source_lines, target_lines, words",
    [
        (["anna sees li", "li calls omar", "omar sees anna"], ["anna li vidas", "li omar vokas"],
         "has 3 lines but .* has 2"),
        ([], [], "are empty"),
        (["anna sees li", ""], ["anna li vidas", "li omar vokas"], "pair 2: the source sentence is empty"),
    ],
)
def test_bad_parallel_files_are_explained(parallel_files, source_lines, target_lines, words):
    with pytest.raises(LslmError, match=words):
        tr.load_parallel(*parallel_files(source_lines, target_lines))


# ----------------------------------------------------------------------------- a trained model

SMALL = dict(block_size=12, n_layer=1, n_head=4, n_embd=32)


@pytest.fixture(scope="module")
def trained(splits):
    """A small model trained for 600 steps (several seconds)."""
    src_v = tr.WordVocab.from_sentences(s for s, _ in splits["train"])
    tgt_v = tr.WordVocab.from_sentences(t for _, t in splits["train"])
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=src_v.vocab_size, tgt_vocab_size=tgt_v.vocab_size, **SMALL))
    sample = tr.batch_sampler(splits["train"], src_v, tgt_v, batch_size=32, block_size=12)
    losses = fit(model, tr.seq2seq_loss, sample, steps=600, lr=3e-3)
    return model, src_v, tgt_v, losses


def test_trained_model_beats_the_copy_baseline_by_far(trained, splits):
    model, src_v, tgt_v, losses = trained
    assert losses[-1] < losses[0] / 3
    sources = [s for s, _ in splits["test"]]
    refs = [t for _, t in splits["test"]]
    hyps = tr.translate_with(model, sources, src_v, tgt_v)
    # Copying the source shares only the names (and a few letters) with the reference.
    assert corpus_bleu(sources, refs) == 0.0 and exact_match(sources, refs) == 0.0
    assert chrf(hyps, refs) > chrf(sources, refs) + 40
    assert corpus_bleu(hyps, refs) > 30

    def before_evidential(sentences):
        return [" ".join(s.split()[:-2]) for s in sentences]

    assert exact_match(before_evidential(hyps), before_evidential(refs)) > 15


def test_beam_of_one_is_greedy_and_beams_agree_on_a_trained_model(trained, splits):
    model, src_v, tgt_v, _ = trained
    sources = [s for s, _ in splits["test"][:40]]
    src = tr.encode_sources(sources, src_v, model.config.block_size)
    greedy = model.greedy_decode(src)
    assert model.beam_search(src, beam_size=1) == greedy
    # A wider beam finds translations the model likes at least as well (per token, as
    # beam search ranks them with length_penalty=1).
    beam = model.beam_search(src, beam_size=4)
    def per_token(outs):
        return model.sequence_logprob(src, outs) / torch.tensor([len(o) + 1.0 for o in outs])

    assert per_token(beam).mean() >= per_token(greedy).mean() - 1e-4


def test_parallel_files_split_only_at_newlines(tmp_path):
    src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
    src.write_bytes("\ufeffanna\u2028sees li\r\nli calls omar\n".encode())
    tgt.write_text("anna li vidas\nli omar vokas\n", encoding="utf-8")
    assert tr.load_parallel(src, tgt) == [("anna\u2028sees li", "anna li vidas"), ("li calls omar", "li omar vokas")]


def test_seq2seq_config_checks_its_special_ids_and_types():
    for change in ({"pad_id": -1}, {"eos_id": 32}, {"bos_id": 1.0}, {"bias": "no"}, {"dropout": float("nan")},
                   {"tgt_vocab_size": 2.0}, {"src_vocab_size": 2}):
        with pytest.raises(LslmError) as err:
            Seq2SeqConfig(**change)
        assert "\n" not in str(err.value)
