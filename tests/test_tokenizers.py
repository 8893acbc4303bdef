"""Tokenizers: exact round trips, vocab sizes, pieces, saving, and the errors users meet."""

import base64
import json
import re

import pytest

from lslm.data import python_docs_text
from lslm.errors import LslmError
from lslm.tokenizers import (
    TOKENIZER_KINDS,
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    load_tokenizer,
    tokenizer_from_state,
    train_tokenizer,
)

CORPUS_CHARS = 150_000  # a slice keeps sentencepiece training well under a second
VOCAB = 600
SP_KINDS = ("bpe", "unigram")

TRICKY = [
    "line one\nline two\n\n\nafter blank lines\n",
    "double  spaces   and    more",
    "\ttabs\tand\t\ttabs",
    "  leading spaces",
    "trailing spaces  ",
    "\n",
    " ",
    "",
    "windows\r\nline end",
]
# Characters a tokenizer trained on English has never seen, and sentencepiece's own
# symbols used literally: only the subword tokenizers must handle these.
UNSEEN = [
    "大规模语言模型通过学习大量的文本数据。",
    "emoji 🙂, accents é and e\u0301, ideographic\u3000space",
    "sentencepiece's space ▁ used literally, ▁▁ twice, and <0x41> <unk> as text",
    "control \x00 \x0b \x1b characters",
]


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message.strip() == message
    return message


@pytest.fixture(scope="module")
def corpus() -> str:
    return python_docs_text()[:CORPUS_CHARS]


@pytest.fixture(scope="module")
def toks(corpus) -> dict[str, Tokenizer]:
    # A char tokenizer only knows the characters it was trained on, so it also sees TRICKY.
    return {
        "char": train_tokenizer("char", corpus + "".join(TRICKY)),
        **{kind: train_tokenizer(kind, corpus, VOCAB) for kind in SP_KINDS},
    }


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_round_trip_on_corpus_and_tricky_strings(toks, corpus, kind):
    tok = toks[kind]
    assert isinstance(tok, Tokenizer) and tok.kind == kind
    for text in [corpus[:20_000], *TRICKY]:
        ids = tok.encode(text)
        assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text


@pytest.mark.parametrize("kind", SP_KINDS)
def test_subword_round_trip_on_text_never_seen(toks, kind):
    tok = toks[kind]
    later_docs = python_docs_text()[CORPUS_CHARS : CORPUS_CHARS + 20_000]
    for text in [later_docs, *UNSEEN]:
        assert tok.decode(tok.encode(text)) == text, repr(text)


@pytest.mark.parametrize("kind", SP_KINDS)
def test_unseen_characters_become_byte_pieces_not_unk(toks, kind):
    tok = toks[kind]
    chinese = UNSEEN[0]
    pieces = tok.pieces(chinese)
    assert "<0xE5>" in pieces  # 大 is E5 A4 A7 in UTF-8
    assert tok.processor.unk_id() not in tok.encode(chinese)


@pytest.mark.parametrize("kind", SP_KINDS)
def test_decode_accepts_tensors(toks, kind):
    torch = pytest.importorskip("torch")
    tok = toks[kind]
    ids = tok.encode("Hello there")
    assert tok.decode(torch.tensor(ids)) == "Hello there"


def test_vocab_size(toks, corpus):
    assert toks["bpe"].vocab_size == VOCAB
    assert toks["unigram"].vocab_size == VOCAB
    assert toks["char"].vocab_size == len(set(corpus + "".join(TRICKY)))
    # For char the requested size is ignored: the vocabulary is the set of characters.
    assert train_tokenizer("char", "banana", vocab_size=1000).vocab_size == 3
    assert CharTokenizer.train("banana").chars == ["a", "b", "n"]


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_pieces_line_up_with_ids(toks, kind):
    tok = toks[kind]
    for text in ["The value of the expression is returned.", *TRICKY]:
        pieces = tok.pieces(text)
        assert len(pieces) == len(tok.encode(text))
        assert pieces == [tok.id_to_piece(i) for i in tok.encode(text)]
        # Unless characters fell back to byte pieces (tabs, say), the pieces spell the
        # text; sentencepiece shows spaces as ▁.
        if text.startswith("The value") or not any(p.startswith("<0x") for p in pieces):
            assert "".join(pieces).replace("\u2581", " ") == text


@pytest.mark.parametrize("kind", SP_KINDS)
def test_newline_is_one_piece(toks, kind):
    assert toks[kind].pieces("one\ntwo\n\n").count("\n") == 3


def test_bpe_pieces_look_like_sentencepiece(toks):
    pieces = toks["bpe"].pieces("read the documentation of the module")
    assert "\u2581the" in pieces
    assert pieces[0].startswith("r")  # no invented leading space


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_state_and_save_load_round_trip(toks, kind, tmp_path):
    tok = toks[kind]
    text = python_docs_text()[:5_000] + "".join(TRICKY)
    state = json.loads(json.dumps(tok.state()))  # must survive JSON
    assert state["kind"] == kind
    rebuilt = tokenizer_from_state(state)
    assert type(rebuilt) is type(tok) and rebuilt.vocab_size == tok.vocab_size
    assert rebuilt.encode(text) == tok.encode(text)

    path = tok.save(tmp_path / "sub" / "tokenizer.json")
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp file left
    loaded = load_tokenizer(path)
    assert loaded.kind == kind and loaded.encode(text) == tok.encode(text)
    assert loaded.decode(loaded.encode(text)) == text


@pytest.mark.parametrize("kind", SP_KINDS)
def test_training_is_deterministic(toks, corpus, kind):
    again = SentencePieceTokenizer.train(corpus, VOCAB, model_type=kind)
    assert again.model_proto == toks[kind].model_proto


def test_one_long_line_still_trains():
    # sentencepiece skips training "sentences" over 4192 bytes; lslm cuts them up.
    text = " ".join(f"word{i % 50}" for i in range(5_000))
    tok = train_tokenizer("bpe", text, 300)
    assert tok.vocab_size == 300 and tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("kind", SP_KINDS)
def test_too_large_vocab_names_the_largest_that_works(corpus, kind):
    text = corpus[:5_000]
    with pytest.raises(LslmError) as err:
        train_tokenizer(kind, text, 50_000)
    expected = r"--vocab-size 50000 is too large for this corpus: the largest that works is (\d+)"
    m = re.fullmatch(expected, one_line(err))
    assert m, str(err.value)
    largest = int(m[1])
    assert train_tokenizer(kind, text, largest).vocab_size == largest


@pytest.mark.parametrize("kind", SP_KINDS)
def test_too_small_vocab_names_the_smallest_that_works(kind):
    text = "the cat sat on the mat\nthe dog sat on the log\n" * 20
    with pytest.raises(LslmError) as err:
        train_tokenizer(kind, text, 100)
    m = re.search(r"too small for this corpus: the smallest that works is (\d+)", one_line(err))
    assert m, str(err.value)
    smallest = int(m[1])
    # 256 byte pieces + <unk> + "\n" + one piece per distinct character.
    assert smallest == 258 + len(set(text) - {"\n"})
    assert train_tokenizer(kind, text, smallest).vocab_size == smallest
    with pytest.raises(LslmError):
        train_tokenizer(kind, text, smallest - 1)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_bad_vocab_size_values(bad):
    with pytest.raises(LslmError) as err:
        train_tokenizer("bpe", "some text", bad)
    assert "--vocab-size must be a positive whole number" in one_line(err)


def test_char_unknown_characters_are_named():
    tok = CharTokenizer.train("abc abc")
    with pytest.raises(LslmError) as err:
        tok.encode("abc xyz 1234567")
    message = one_line(err)
    assert "'x', 'y', 'z', '1', '2'" in message and "'3'" not in message  # at most five
    assert "training corpus" in message and "bpe/unigram" in message


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_empty_training_text(kind):
    with pytest.raises(LslmError) as err:
        train_tokenizer(kind, "", 300)
    assert "empty" in one_line(err)


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_out_of_range_ids(toks, kind):
    tok = toks[kind]
    for bad in ([tok.vocab_size], [-1]):
        with pytest.raises(LslmError) as err:
            tok.decode(bad)
        assert f"0..{tok.vocab_size - 1}" in one_line(err)
    with pytest.raises(LslmError):
        tok.id_to_piece(tok.vocab_size)


def test_unknown_kind():
    with pytest.raises(LslmError) as err:
        train_tokenizer("wordpiece", "some text")
    assert "'wordpiece'" in one_line(err) and "char, bpe, unigram" in str(err.value)
    with pytest.raises(LslmError) as err:
        tokenizer_from_state({"kind": "wordpiece"})
    assert "char, bpe, unigram" in one_line(err)


@pytest.mark.parametrize(
    "state",
    [
        None,
        ["char"],
        {"chars": ["a"]},
        {"kind": "char"},
        {"kind": "char", "chars": "abc"},
        {"kind": "char", "chars": ["ab", "c"]},
        {"kind": "char", "chars": ["a", "a"]},
        {"kind": "bpe"},
        {"kind": "bpe", "model": "not base64!"},
        {"kind": "unigram", "model": base64.b64encode(b"not a model").decode()},
    ],
)
def test_malformed_state(state):
    with pytest.raises(LslmError) as err:
        tokenizer_from_state(state)
    one_line(err)


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(LslmError) as err:
        load_tokenizer(tmp_path / "missing.json")
    assert "missing.json" in one_line(err)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LslmError) as err:
        load_tokenizer(bad)
    assert "Tokenizer.save" in one_line(err)


@pytest.mark.parametrize("kind, text", [("bpe", None), ("char", None), ("unigram", b"bytes"),
                                        ("char", ["a", "b"]), ("bpe", "ok \udc80 not"), (["char"], "abc")])
def test_train_tokenizer_refuses_what_is_not_text(kind, text):
    with pytest.raises(LslmError) as err:
        train_tokenizer(kind, text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("vocab_size", [2**31, 10**100, 2.5, True, 0, "100"])
def test_train_tokenizer_refuses_vocab_sizes_sentencepiece_cannot_take(vocab_size):
    with pytest.raises(LslmError, match="vocab") as err:
        train_tokenizer("bpe", "hello world " * 50, vocab_size)
    one_line(err)


def test_char_encode_refuses_what_is_not_text():
    with pytest.raises(LslmError, match="str"):
        train_tokenizer("char", "abc").encode(None)


# A text that keeps sentencepiece busy for seconds: 50,000 made-up words, 20,000 pieces to find.
SLOW_TRAINING = """
import random, sys
from lslm.tokenizers import train_tokenizer
rng = random.Random(0)
letters = "abcdefghijklmnopqrstuvwxyz\\u00e9\\u00e8\\u00e0\\u00fc\\u00f6\\u00df\\u00e7\\u00f1"
words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(50000)]
text = "\\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(15000))
print("training", flush=True)
train_tokenizer("unigram", text, 20000)
print("done", flush=True)
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGINT") or __import__("os").name == "nt",
                    reason="sends SIGINT to a child process")
def test_ctrl_c_interrupts_sentencepiece_training_promptly():
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", SLOW_TRAINING], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "training"
        time.sleep(0.5)  # inside sentencepiece's C++ trainer by now
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        waited = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    assert "done" not in stdout  # interrupted, not finished
    assert "KeyboardInterrupt" in stderr
    assert waited < 3, f"Ctrl-C took {waited:.1f} s to stop the training"


def test_load_tokenizer_reads_only_regular_files(tmp_path):
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs")
    os.mkfifo(tmp_path / "tok.json")  # reading it would block forever
    with pytest.raises(LslmError, match="not a regular file") as err:
        load_tokenizer(tmp_path / "tok.json")
    one_line(err)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LslmError, match="nested too deeply") as err:
        load_tokenizer(tmp_path / "deep.json")
