"""The coding exercises: each passes its worked solution and fails the usual wrong answers with
their hint; a learner's function that raises, hangs, or returns the wrong thing gets a one-line
verdict, and the notebook never crashes."""

import math
import threading
import time

import pytest
import torch

from lslm.checks import CODE_EXERCISES, check_code
from lslm.checks import coding as C
from lslm.checks import solutions as S
from lslm.errors import LslmError


@pytest.mark.parametrize("name", sorted(CODE_EXERCISES))
def test_the_worked_solution_passes(name):
    verdict = check_code(name, getattr(S, name), quiet=True)
    assert verdict, verdict.message
    assert verdict.message.startswith("Correct")


@pytest.mark.parametrize("name", sorted(CODE_EXERCISES))
def test_every_usual_mistake_fails_with_its_own_hint(name):
    ex = CODE_EXERCISES[name]
    assert ex.mistakes, f"{name} lists no wrong answers"
    for wrong, hint in ex.mistakes:
        verdict = check_code(name, wrong, quiet=True)
        assert not verdict, f"{name}: {wrong.__name__} passed"
        assert verdict.message.endswith(f"Hint: {hint}"), (wrong.__name__, verdict.message)
        assert "\n" not in verdict.message


def test_attention_mistakes_the_issue_names_all_fail():
    def off_by_one(q, k, v):  # each position may not look at itself
        t = q.size(-2)
        s = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(
            torch.ones(t, t, dtype=torch.bool).triu(0), float("-inf"))
        return torch.softmax(s, -1) @ v

    def shifted(q, k, v):  # the mask one step too generous: each position sees the next one too
        t = q.size(-2)
        s = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(
            torch.ones(t, t, dtype=torch.bool).triu(2), float("-inf"))
        return torch.softmax(s, -1) @ v

    for wrong in (C._no_scale, C._mask_after_softmax, off_by_one, shifted):
        assert not check_code("causal_attention", wrong, quiet=True), wrong.__name__
    assert "NaN" in check_code("causal_attention", off_by_one, quiet=True).message


def test_a_scaffold_is_not_written_yet():
    def scaffold(q, k, v):
        ...  # your code here

    def raising(q, k, v):
        raise NotImplementedError

    for fn in (None, scaffold, raising):
        verdict = check_code("causal_attention", fn, quiet=True)
        assert not verdict and verdict.message.startswith("Not written yet")
    assert "function itself" in check_code("causal_attention", "causal_attention", quiet=True).message


def test_a_function_that_raises_gets_one_line_naming_the_error():
    def broken(q, k, v):
        return q @ k  # (.., t, d) @ (.., t, d): the shapes do not fit

    verdict = check_code("causal_attention", broken, quiet=True)
    assert not verdict and "raised RuntimeError" in verdict.message and "return q @ k" in verdict.message
    assert "\n" not in verdict.message


@pytest.mark.parametrize("fn, words", [
    (lambda q, k, v: (q @ k.transpose(-2, -1)).tolist(), "returned a list, not a torch.Tensor"),
    (lambda q, k, v: q @ k.transpose(-2, -1), "returned shape (1, 1, 1), expected (1, 1, 4)"),
    (lambda q, k, v: S.causal_attention(q, k, v).double(), "dtype torch.float64, expected torch.float32"),
    (lambda q, k, v: torch.empty(q.shape, device="meta"), "on meta, expected cpu"),
])
def test_the_wrong_kind_of_answer_is_named(fn, words):
    verdict = check_code("causal_attention", fn, quiet=True)
    assert not verdict and words in verdict.message and "\n" not in verdict.message


def test_a_hang_is_stopped_with_a_clear_message():
    def forever(q, k, v):
        while True:
            pass

    start = time.perf_counter()
    verdict = check_code("causal_attention", forever, timeout_s=0.5, quiet=True)
    assert time.perf_counter() - start < 5
    assert not verdict and "still running after 0.5 s" in verdict.message


def test_a_hang_off_the_main_thread_is_reported_too():
    def slow(q, k, v):  # stops by itself, so the abandoned thread does not outlive the test for long
        time.sleep(2)
        return S.causal_attention(q, k, v)

    out = {}
    worker = threading.Thread(target=lambda: out.update(v=check_code("causal_attention", slow, timeout_s=0.3, quiet=True)))
    worker.start()
    worker.join(10)
    assert "still running after 0.3 s" in out["v"].message


def test_changing_the_input_in_place_is_named():
    def in_place(q, k, v):
        out = S.causal_attention(q, k, v)
        q.zero_()
        return out

    assert "changed its input number 1 in place" in check_code("causal_attention", in_place, quiet=True).message


def test_the_verdict_is_printed_and_an_unknown_exercise_is_an_error(capsys):
    assert check_code("split_heads", S.split_heads)
    assert capsys.readouterr().out.startswith("Correct")
    with pytest.raises(LslmError, match="no coding exercise"):
        check_code("flash_attention", S.causal_attention)


def test_a_training_step_is_judged_by_the_parameters_it_leaves():
    def forgets_the_step(model, x, y, optimizer, max_norm):  # the right loss, no update
        return model(x, y)[1].item()

    verdict = check_code("train_step", forgets_the_step, quiet=True)
    assert not verdict and "the model's parameters after your step" in verdict.message


def test_the_old_gradients_reach_the_learners_step():
    seen = []

    def spy(model, x, y, optimizer, max_norm):
        seen.append(all(p.grad is not None for p in model.parameters()))
        return S.train_step(model, x, y, optimizer, max_norm)

    assert check_code("train_step", spy, quiet=True)
    assert seen == [False, True, False, True]  # the cases that leave gradients behind hand them over


def test_averaging_the_workers_gradients_gives_the_whole_batchs_gradient():
    from lslm.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=0)
    x = torch.randint(0, 11, (4, 8), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 11, (4, 8), generator=torch.Generator().manual_seed(2))

    def grads(xs, ys):
        model.zero_grad()
        model(xs, ys)[1].backward()
        return [p.grad.clone() for p in model.parameters()]

    whole = grads(x, y)
    halves = S.average_gradients([grads(x[:2], y[:2]), grads(x[2:], y[2:])])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, halves))


def test_the_parameter_count_reference_is_the_real_models():
    from lslm.model import GPT, GPTConfig

    for case in CODE_EXERCISES["gpt_params"].cases()[::2]:  # GPT-2 small is checked in test_model
        vocab, block, layers, width = case.args
        real = GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=layers, n_head=1, n_embd=width))
        assert S.gpt_params(*case.args) == real.num_params()


def test_a_dict_answer_is_compared_key_by_key():
    assert "expected a dict" in check_code("clip_per_example", lambda per_example, clip: [0.0], quiet=True).message

    def missing_scale(per_example, clip):  # right keys, one value wrong
        out = S.clip_per_example(per_example, clip)
        return {k: v * 2 if k == "b" else v for k, v in out.items()}

    assert "its 'b':" in check_code("clip_per_example", missing_scale, quiet=True).message
