"""Extractive question answering: the generator, the SQuAD loader, the scores, the model."""

import json
import re

import pytest
import torch

from lslm.errors import LslmError
from lslm.tasks import qa
from lslm.tasks.qa import QAExample


def sentences_of(context: str) -> list[str]:
    return re.split(r"(?<=[.!?]) ", context)


# ------------------------------------------------------------------ the generator
def test_generator_is_deterministic_and_consistent():
    train, test = qa.make_qa_data(300, 100, seed=3)
    again = qa.make_qa_data(300, 100, seed=3)
    assert (train, test) == again
    assert qa.make_qa_data(300, 100, seed=4)[0] != train
    for ex in train + test:
        assert ex.context[ex.answer_start : ex.answer_start + len(ex.answer)] == ex.answer
        sents = sentences_of(ex.context)
        assert 3 <= len(sents) <= 4
        assert ex.answer in sents[ex.support]
        (name,) = [w for w in re.findall(r"\w+", ex.question) if w in qa.NAMES]
        assert sents[ex.support].startswith(name + " ")
        # Each sentence is about a different person, and the support is the only one about `name`.
        firsts = [s.split()[0] for s in sents]
        assert len(set(firsts)) == len(firsts)
        # A distractor has the same shape (the same relation) as the supporting sentence.
        template = qa.RELATIONS[ex.relation][0].split("{value}")[0].replace("{name}", "")
        assert sum(template in s for s in sents) >= 2


def test_test_answers_are_facts_never_seen_in_training():
    train, test = qa.make_qa_data(2000, 300, seed=0)
    seen = {s for ex in train for s in sentences_of(ex.context)}
    supports = [sentences_of(ex.context)[ex.support] for ex in test]
    assert not any(s in seen for s in supports)
    # ...while every name and answer word does occur in training: only the pairing is new.
    vocab = qa.QAVocab.build(train)
    for ex in test:
        assert all(w in vocab.stoi for w, _, _ in qa.tokenize(ex.context + " " + ex.question))
    # The supporting sentence is not always in the same place.
    assert len({ex.support for ex in test}) >= 3


def test_bad_generator_arguments():
    with pytest.raises(LslmError):
        qa.make_qa_data(-1, 10)
    with pytest.raises(LslmError):
        qa.make_qa_data(10, 10, sentences=(1,))


# ------------------------------------------------------------------------ scores
def test_normalisation_and_scores():
    assert qa.normalize_answer("The  Red car!") == "red car"
    assert qa.is_exact_match("a red car", "Red car.") is True
    assert qa.is_exact_match("red", "red car") is False
    # "red" vs "red car": precision 1, recall 1/2, F1 = 2/3.
    assert qa.f1("red", "red car") == pytest.approx(2 / 3)
    # "the blue car" vs "red car": one shared word of 2 and 2 -> P = R = 1/2.
    assert qa.f1("the blue car", "red car") == pytest.approx(0.5)
    assert qa.f1("Paris", "Oslo") == 0.0
    assert qa.f1("Oslo", ["Paris", "oslo"]) == 1.0  # the best of several gold answers
    assert qa.f1("", "") == 1.0 and qa.f1("the", "Oslo") == 0.0
    ex = QAExample("q?", "Ana is 30 years old. Bo is 31 years old.", "30", 7)
    assert qa.first_sentence_baseline(ex) == "Ana is 30 years old."
    s = qa.score(["30", "31"], [ex, ex])
    assert s == {"exact_match": 0.5, "f1": 0.5}
    with pytest.raises(LslmError):
        qa.score(["30"], [ex, ex])


def test_encode_finds_the_answer_tokens():
    train, _ = qa.make_qa_data(50, 0)
    vocab = qa.QAVocab.build(train)
    for ex in train:
        e = qa.encode(ex, vocab, 40)
        assert e.words[e.passage_start - 1] == qa.SEP
        assert " ".join(e.words[e.start : e.end + 1]) == ex.answer
        spans = qa.sentence_spans(e.words, e.passage_start)
        assert len(spans) == len(sentences_of(ex.context))
        s, t = spans[ex.support]
        assert s <= e.start <= e.end < t
    assert vocab.encode(["Zyx"]) == [vocab.stoi[qa.UNK]]
    with pytest.raises(LslmError, match="block_size"):
        qa.encode(train[0], vocab, 10)


# ------------------------------------------------------------------- SQuAD JSON
def squad(paragraphs) -> dict:
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}


def write(tmp_path, obj, name="d.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def test_load_squad_fixture(tmp_path):
    context = "Marie Curie was born in Warsaw. She won two Nobel Prizes."
    path = write(tmp_path, squad([{"context": context, "qas": [
        {"id": "q1", "question": "Where was Marie Curie born?",
         "answers": [{"text": "Warsaw", "answer_start": 24}, {"text": "in Warsaw", "answer_start": 21}]},
        {"id": "q2", "question": "How many Nobel Prizes did she win?",
         "answers": [{"text": "two", "answer_start": 40}]},
    ]}]))
    examples = qa.load_squad(path, block_size=32)
    assert [e.id for e in examples] == ["q1", "q2"]
    assert examples[0].answer == "Warsaw" and examples[0].answers == ("Warsaw", "in Warsaw")
    assert examples[1].context[40:43] == "two"
    # A round trip through write_squad keeps every field the format has.
    train, _ = qa.make_qa_data(20, 0)
    back = qa.load_squad(qa.write_squad(train, tmp_path / "round.json"))
    assert [(e.question, e.context, e.answer, e.answer_start, e.id) for e in back] == \
           [(e.question, e.context, e.answer, e.answer_start, e.id) for e in train]


@pytest.mark.parametrize("content, message", [
    (squad([]), "no questions"),
    ({"data": []}, "no questions"),
    ("{not json", "not valid JSON"),
    ({"articles": []}, "'data'"),
    ({"data": [{"title": "x"}]}, "'paragraphs'"),
    (squad([{"qas": []}]), "'context'"),
    (squad([{"context": "abc", "qas": [{"question": "q?"}]}]), "'answers'"),
    (squad([{"context": "abc", "qas": [{"question": "q?", "answers": [{"text": "b"}]}]}]), "'answer_start'"),
    (squad([{"context": "abc", "qas": [{"question": "q?", "answers": []}]}]), "no answers"),
    (squad([{"context": "Oslo is cold.", "qas": [
        {"question": "q?", "answers": [{"text": "cold", "answer_start": 3}]}]}]), "the text is at 8"),
    (squad([{"context": "Oslo is cold.", "qas": [
        {"question": "q?", "answers": [{"text": "warm", "answer_start": 8}]}]}]), "not in the context"),
])
def test_load_squad_errors(tmp_path, content, message):
    with pytest.raises(LslmError, match=message) as info:
        qa.load_squad(write(tmp_path, content))
    assert "\n" not in str(info.value)


def test_load_squad_checks_block_size_and_path(tmp_path):
    context = " ".join(["word"] * 30) + " end."
    path = write(tmp_path, squad([{"context": context, "qas": [
        {"question": "Which word ends it?", "answers": [{"text": "end", "answer_start": context.index("end")}]}]}]))
    assert len(qa.load_squad(path, block_size=64)) == 1
    with pytest.raises(LslmError, match="block_size is 20"):
        qa.load_squad(path, block_size=20)
    with pytest.raises(LslmError, match="no SQuAD file"):
        qa.load_squad(tmp_path / "missing.json")


def test_check_exercise():
    from lslm.checks import check

    # "the red car in Paris" -> red car in paris (4 words); "a red car" -> red car (2): 2 shared.
    assert check("qa_token_f1", 2 * 0.5 * 1.0 / 1.5, prediction="the red car in Paris", gold="a red car")
    assert not check("qa_token_f1", 0.5, prediction="the red car in Paris", gold="a red car")


# ------------------------------------------------------------------------- model
def test_best_spans_respects_order_and_length():
    start = torch.tensor([[0.0, 5.0, 0.0, 0.0, 9.0]])
    end = torch.tensor([[0.0, 0.0, 0.0, 8.0, 0.0]])
    # start 4 + end 3 is not allowed (end before start): the best legal pair is (1, 3).
    assert qa.best_spans(start, end) == [(1, 3)]
    assert qa.best_spans(start, end, max_len=2) == [(4, 4)]


def test_span_model_beats_the_first_sentence_baseline():
    from lslm.model import GPT, GPTConfig
    from lslm.tasks.common import fit

    torch.manual_seed(0)
    train, test = qa.make_qa_data(3000, 200, seed=1)
    vocab = qa.QAVocab.build(train)
    block = 40
    encoded = [qa.encode(ex, vocab, block) for ex in train]
    config = GPTConfig(vocab_size=len(vocab), block_size=block, n_layer=2, n_head=2, n_embd=64)
    model = qa.SpanQA(GPT(config))

    def sample(gen):
        return qa.collate([encoded[i] for i in torch.randint(len(encoded), (32,), generator=gen)])

    fit(model, qa.span_loss, sample, steps=150, lr=3e-3)
    predictions = qa.predict(model, test, vocab, block)
    # Every prediction is a span of its own passage.
    assert all(p and p in ex.context for p, ex in zip(predictions, test))
    ours = qa.score(predictions, test)
    baseline = qa.score([qa.first_sentence_baseline(ex) for ex in test], test)
    assert baseline["exact_match"] == 0.0 and baseline["f1"] < 0.25
    assert ours["exact_match"] > 0.2
    assert ours["f1"] > baseline["f1"] + 0.15
    weights = qa.sentence_attention(model, test[0], vocab, block)
    assert weights.shape == (2, 2, len(sentences_of(test[0].context)))
    assert torch.all(weights >= 0) and torch.all(weights.sum(-1) <= 1 + 1e-6)


def test_span_loss_is_the_mean_of_start_and_end_cross_entropy():
    from lslm.model import GPT, GPTConfig

    train, _ = qa.make_qa_data(8, 0, seed=2)
    vocab = qa.QAVocab.build(train)
    model = qa.SpanQA(GPT(GPTConfig(vocab_size=len(vocab), block_size=40, n_layer=1, n_head=2,
                                    n_embd=16)), seed=0)
    batch = qa.collate([qa.encode(ex, vocab, 40) for ex in train])
    start, end = model(batch["idx"], batch["passage_mask"])
    by_hand = [torch.nn.functional.cross_entropy(logits, batch[k]).item()
               for logits, k in ((start, "start"), (end, "end"))]
    assert by_hand[0] != pytest.approx(by_hand[1])  # so a sum or one term alone would differ
    assert qa.span_loss(model, batch).item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)


def test_span_model_names_its_backbone_and_keeps_its_mode():
    from lslm.model import GPT, GPTConfig

    train, test = qa.make_qa_data(60, 5, seed=1)
    vocab = qa.QAVocab.build(train)
    gpt = GPT(GPTConfig(vocab_size=len(vocab), block_size=40, n_layer=1, n_head=2, n_embd=16))
    model = qa.SpanQA(gpt)
    assert model.backbone is gpt  # the same name as the sentiment classifier's
    model.train()
    qa.predict(model, test, vocab, 40)
    qa.sentence_attention(model, test[0], vocab, 40)
    assert model.training


@pytest.mark.parametrize("answer, message", [
    ({"text": "cold.", "answer_start": -5}, "answer_start=-5"),  # context[-5:] is "cold.": refused
    ({"text": "cold", "answer_start": 100}, "answer_start=100"),
    ({"text": "cold", "answer_start": True}, "whole number"),
    ({"text": "cold", "answer_start": 8.0}, "'answer_start'"),
    ({"text": "", "answer_start": 0}, "non-empty"),
    ({"text": ["cold"], "answer_start": 8}, "'text'"),
])
def test_load_squad_refuses_answers_outside_the_passage(tmp_path, answer, message):
    content = squad([{"context": "Oslo is cold.", "qas": [{"question": "q?", "answers": [answer]}]}])
    with pytest.raises(LslmError, match=message) as info:
        qa.load_squad(write(tmp_path, content))
    assert "\n" not in str(info.value)


def test_load_squad_survives_deep_nesting_huge_numbers_and_odd_paths(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LslmError, match="nested too deeply"):
        qa.load_squad(deep)
    huge = tmp_path / "huge.json"
    huge.write_text('{"data": [' + "9" * 5000 + "]}")
    with pytest.raises(LslmError, match="not valid JSON"):
        qa.load_squad(huge)
    with pytest.raises(LslmError, match="is a folder"):
        qa.load_squad(tmp_path)
    bad_id = squad([{"context": "Oslo is cold.", "qas": [
        {"id": ["x"], "question": "q?", "answers": [{"text": "cold", "answer_start": 8}]}]}])
    with pytest.raises(LslmError, match="'id'"):
        qa.load_squad(write(tmp_path, bad_id))


def test_load_squad_never_quotes_the_file(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"data": "hunter2"} trailing hunter2')
    with pytest.raises(LslmError) as info:
        qa.load_squad(secret)
    assert "hunter2" not in str(info.value)
    secret.write_bytes(b'{"data": "\xff hunter2"}')
    with pytest.raises(LslmError, match="UTF-8") as info:
        qa.load_squad(secret)
    assert "hunter2" not in str(info.value)
