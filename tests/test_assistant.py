"""lslm.assistant: the world's instruction data, its scoring and its preference pairs."""

import random

import pytest

from lslm.assistant import (ENDING_QUESTION, SUMMARY_REQUEST, chat_example, false_answer,
                            instructions, plain_prompt, score)
from lslm.errors import LslmError
from lslm.tokenizers import ChatTokenizer, train_tokenizer
from lslm.world import stories

STORIES = stories(120, seed=4)


def test_each_story_gets_every_question_its_ending_and_its_summary_with_the_true_answers():
    items = instructions(STORIES)
    per_story = len(STORIES[0].questions) + 2
    assert len(items) == per_story * len(STORIES)
    for k, story in enumerate(STORIES):
        group = items[k * per_story : (k + 1) * per_story]
        assert all(i.story is story for i in group)
        *questions, ending, summary = group
        assert [(i.task, i.request, i.answer) for i in questions] == [
            ("answer", q.question, q.answer) for q in story.questions]
        assert ending.request == ENDING_QUESTION and ending.answer == {"happy": "happily", "sad": "sadly"}[story.ending]
        assert summary.task == "summary" and summary.request == SUMMARY_REQUEST and summary.answer == story.summary
        assert questions[0].instruction == f"{story.text}\n{story.questions[0].question}"


def test_the_truth_scores_one_and_a_wrong_answer_zero():
    for item in instructions(STORIES):
        assert score(item, item.answer) == 1.0
        if item.task != "summary":
            assert score(item, item.answer.upper() + ".") == 1.0  # case and punctuation aside
        assert score(item, false_answer(item, random.Random(0))) < 1.0, item


def test_false_answers_differ_from_the_truth_and_sound_like_answers():
    rng = random.Random(0)
    for item in instructions(STORIES):
        wrong = false_answer(item, rng)
        assert wrong.strip() and wrong != item.answer
        if item.task == "answer" and item.answer in [c.name for c in item.story.characters]:
            assert wrong in [c.name for c in item.story.characters]  # the other character


def test_plain_prompts_end_where_the_answer_goes():
    item = instructions(STORIES[:1])[0]
    assert plain_prompt(item) == f"{item.story.text}\n{item.request}\nAnswer:"


def test_chat_examples_need_a_chat_tokenizer_and_room_in_the_context():
    tok = train_tokenizer("bpe", " ".join(s.text for s in STORIES), vocab_size=600)
    item = instructions(STORIES[:1], tasks=("ending",))[0]
    with pytest.raises(LslmError, match="no special token"):
        chat_example(tok, item, 512)
    chat = ChatTokenizer(tok)
    example = chat_example(chat, item, 512)
    assert chat.decode(list(example.ids[example.start:])) == f" {item.answer}<|end|>"
    with pytest.raises(LslmError, match="context"):
        chat_example(chat, item, 20)
    with pytest.raises(LslmError, match="unknown task"):
        instructions(STORIES, tasks=("poem",))


def test_assistant_lm_trains_once_then_loads_and_retrains_a_corrupt_file(tmp_path, monkeypatch):
    import torch

    import lslm.assistant as asst
    import lslm.world_model as wm
    from lslm.checkpoint import checkpoint_file

    monkeypatch.setenv("LSLM_CACHE", str(tmp_path))
    world = wm.with_recipe(stories=80, vocab_size=400, tokenizer_chars=40_000, n_layer=1, n_head=2,
                           n_embd=32, block_size=32, batch_size=4, max_iters=3, warmup_iters=0)
    recipe = asst.AssistantRecipe(stories=30, block_size=640, steps=2, batch_size=2)
    before = asst.TRAINED["count"]
    model, chat = asst.assistant_lm(recipe, world_recipe=world)
    assert asst.TRAINED["count"] == before + 1
    assert isinstance(chat, ChatTokenizer) and model.config.vocab_size == chat.vocab_size
    again, chat2 = asst.assistant_lm(recipe, world_recipe=world)
    assert asst.TRAINED["count"] == before + 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert chat2.encode("<|user|> hi<|assistant|>") == chat.encode("<|user|> hi<|assistant|>")
    [file] = [checkpoint_file(f) for f in (tmp_path / "models").glob("assistant-*") if f.is_dir()]
    file.write_bytes(file.read_bytes()[:100])
    asst.assistant_lm(recipe, world_recipe=world)
    assert asst.TRAINED["count"] == before + 2


def test_greedy_answer_reads_the_chat_prompt_and_stops_at_the_end_marker():
    import torch

    from lslm.assistant import answer_text, greedy_answer, reply
    from lslm.finetune import encode_example, finetune
    from lslm.model import GPT, GPTConfig

    chat = ChatTokenizer(train_tokenizer("bpe", " ".join(s.text for s in STORIES), vocab_size=600))
    model = GPT(GPTConfig(vocab_size=chat.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32,
                          position="rope"), seed=0)
    t = chat.template
    finetune(model, [encode_example(chat.encode, t.prompt(" Who?"), t.response(" Tom"), 64)] * 4,
             steps=40, batch_size=4, lr=1e-2, amp=False)
    prompt, written, stopped = greedy_answer(model, chat, "Who?")
    assert prompt == chat.encode(t.prompt(" Who?"))
    assert stopped and written[-1] == chat.special_ids[t.end] and written.count(written[-1]) == 1
    assert answer_text(chat, written) == reply(model, chat, "Who?") == "Tom"
    model.train()
    greedy_answer(model, chat, "Who?", max_new_tokens=3)
    assert model.training  # the caller's mode is restored
    assert len(greedy_answer(model, chat, "Who is it?", max_new_tokens=3)[1]) <= 3
    for bad in ("", "   ", "x " * 200):
        with pytest.raises(LslmError):
            greedy_answer(model, chat, bad)
