"""Direct Preference Optimization (lslm.dpo): the loss against its formula, the log-probability
of a response against a slow loop, a few steps of training, and one-line errors."""

import math

import pytest
import torch

from lslm.dpo import (
    PreferencePair,
    dpo_loss,
    dpo_step,
    encode_pairs,
    reference_copy,
    sequence_logprobs,
)
from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig


def tiny_gpt(seed: int = 0, n_layer: int = 2) -> GPT:
    return GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=n_layer, n_head=2, n_embd=32), seed=seed)


def encode(text: str) -> list[int]:
    """Characters a..z as ids 1..26 (0 is padding), enough for these tests."""
    return [ord(c) - ord("a") + 1 for c in text]


def one_line_error(call, *words: str) -> str:
    with pytest.raises(LslmError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    for word in words:
        assert word in message, message
    return message


# --- the loss ------------------------------------------------------------------------------

def slow_dpo(pc, pr, rc, rr, beta):
    """DPO by hand with Python floats, one pair at a time."""
    losses, chosen, rejected, margins = [], [], [], []
    for a, b, c, d in zip(pc, pr, rc, rr):
        r_w = beta * (a - c)
        r_l = beta * (b - d)
        m = r_w - r_l
        sigma = 1.0 / (1.0 + math.exp(-m))
        losses.append(-math.log(sigma))
        chosen.append(r_w)
        rejected.append(r_l)
        margins.append(m)
    return sum(losses) / len(losses), chosen, rejected, margins


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_loss_matches_the_written_out_formula(beta):
    gen = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (-20 * torch.rand(9, generator=gen, dtype=torch.float64) for _ in range(4))
    loss, stats = dpo_loss(pc, pr, rc, rr, beta=beta)
    want, chosen, rejected, margins = slow_dpo(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), beta)
    assert loss.dim() == 0
    assert abs(loss.item() - want) < 1e-6
    assert stats["chosen_reward"].tolist() == pytest.approx(chosen, abs=1e-6)
    assert stats["rejected_reward"].tolist() == pytest.approx(rejected, abs=1e-6)
    assert stats["margin"].tolist() == pytest.approx(margins, abs=1e-6)
    assert stats["accuracy"].item() == pytest.approx(sum(m > 0 for m in margins) / len(margins))


def test_dpo_loss_is_stable_for_a_huge_negative_margin():
    # −log σ(m) ≈ −m for very negative m; sigmoid-then-log would give inf.
    loss, _ = dpo_loss(torch.tensor([-1000.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]),
                       beta=1.0)
    assert loss.item() == pytest.approx(1000.0)


def test_at_policy_equal_to_reference_the_loss_is_log_2_and_margins_are_zero():
    logps = -10 * torch.rand(2, 5)
    loss, stats = dpo_loss(logps[0], logps[1], logps[0].clone(), logps[1].clone(), beta=0.3)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert torch.all(stats["margin"] == 0)
    assert torch.all(stats["chosen_reward"] == 0) and torch.all(stats["rejected_reward"] == 0)
    assert stats["accuracy"].item() == 0.0  # no pair has a positive margin yet


def test_the_gradient_raises_the_chosen_and_lowers_the_rejected_log_prob():
    gen = torch.Generator().manual_seed(2)
    pc = (-10 * torch.rand(6, generator=gen)).requires_grad_()
    pr = (-10 * torch.rand(6, generator=gen)).requires_grad_()
    rc, rr = -10 * torch.rand(6, generator=gen), -10 * torch.rand(6, generator=gen)
    rc.requires_grad_()  # even a reference that tracks gradients gets none from the loss
    loss, _ = dpo_loss(pc, pr, rc, rr, beta=0.1)
    loss.backward()
    assert torch.all(pc.grad < 0), "descending the loss must raise log π(chosen)"
    assert torch.all(pr.grad > 0), "descending the loss must lower log π(rejected)"
    assert rc.grad is None


# --- log-probability of a response ---------------------------------------------------------

def slow_sequence_logprobs(model, ids, mask):
    logits, _ = model(ids)
    out = []
    for b in range(ids.size(0)):
        total = 0.0
        for t in range(ids.size(1) - 1):
            if mask[b, t + 1]:
                total += torch.log_softmax(logits[b, t].double(), dim=-1)[ids[b, t + 1]].item()
        out.append(total)
    return out


@pytest.mark.parametrize("n_layer", [1, 2])
def test_sequence_logprobs_matches_a_slow_loop_over_positions(n_layer):
    model = tiny_gpt(seed=3, n_layer=n_layer).eval()
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 40, (3, 12), generator=gen)
    mask = torch.rand(3, 12, generator=gen) < 0.5
    mask[:, 0] = False
    mask[2] = False  # a row with nothing scored sums to 0
    got = sequence_logprobs(model, ids, mask)
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx(slow_sequence_logprobs(model, ids, mask), abs=1e-5)
    assert got[2].item() == 0.0


def test_a_gpt_scores_only_the_response_yet_matches_the_full_pass_and_its_gradient():
    model = tiny_gpt(seed=6).train()
    wrapped = torch.nn.Sequential()  # not a GPT: sequence_logprobs reads every position
    wrapped.forward = lambda ids: model(ids)
    gen = torch.Generator().manual_seed(8)
    ids = torch.randint(0, 40, (3, 10), generator=gen)
    mask = torch.rand(3, 10, generator=gen) < 0.5
    mask[:, 0] = False
    fast = sequence_logprobs(model, ids, mask)
    grads = torch.autograd.grad(fast.sum(), list(model.parameters()))
    full = sequence_logprobs(wrapped, ids, mask)
    full_grads = torch.autograd.grad(full.sum(), list(model.parameters()))
    assert torch.allclose(fast, full, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, full_grads))


def test_padding_after_the_response_does_not_change_the_log_prob():
    model = tiny_gpt(seed=5).eval()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    mask = torch.tensor([[False, False, True, True, True, True]])
    padded_ids = torch.cat([ids, torch.zeros(1, 5, dtype=torch.int64)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 5, dtype=torch.bool)], dim=1)
    plain = sequence_logprobs(model, ids, mask)
    padded = sequence_logprobs(model, padded_ids, padded_mask)
    assert padded.item() == pytest.approx(plain.item(), abs=1e-5)
    with torch.no_grad():  # the reference's way of calling it
        assert not sequence_logprobs(model, ids, mask).requires_grad
    assert plain.requires_grad


# --- pairs and batches ---------------------------------------------------------------------

def test_encode_pairs_puts_prompt_then_answer_and_marks_only_the_answer():
    pairs = [PreferencePair("ab", "cde", "f"), PreferencePair("g", "h", "ij")]
    batch = encode_pairs(pairs, encode, block_size=16, pad_id=0)
    assert batch["chosen_ids"].tolist() == [[1, 2, 3, 4, 5], [7, 8, 0, 0, 0]]
    assert batch["rejected_ids"].tolist() == [[1, 2, 6, 0, 0], [7, 9, 10, 0, 0]]
    assert batch["chosen_mask"].int().tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert batch["rejected_mask"].int().tolist() == [[0, 0, 1, 0, 0], [0, 1, 1, 0, 0]]
    assert batch["chosen_ids"].dtype == torch.int64 and batch["chosen_mask"].dtype == torch.bool


# --- training ------------------------------------------------------------------------------

def test_a_few_dpo_steps_widen_the_margin_and_lower_the_loss():
    torch.manual_seed(0)
    policy = tiny_gpt(seed=6)
    reference = reference_copy(policy)
    pairs = [PreferencePair("ab", "cd", "ef"), PreferencePair("gh", "ij", "kl"), PreferencePair("mn", "op", "qr")]
    batch = encode_pairs(pairs, encode, block_size=policy.config.block_size)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    losses, margins = [], []
    for _ in range(8):
        loss, stats = dpo_step(policy, reference, batch, beta=0.1)
        losses.append(loss.item())
        margins.append(stats["margin"].mean().item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at the start
    assert margins[0] == pytest.approx(0.0, abs=1e-5)
    assert losses[-1] < losses[0] - 0.05
    assert margins[-1] > margins[0] + 0.1
    assert stats["accuracy"].item() == 1.0
    assert all(p.grad is None for p in reference.parameters()), "the reference stays frozen"


def test_the_likelihood_term_adds_the_chosen_answers_mean_nll_per_token():
    policy = tiny_gpt(seed=8)
    reference = reference_copy(tiny_gpt(seed=9))
    pairs = [PreferencePair("ab", "cde", "f"), PreferencePair("gh", "i", "jkl")]
    batch = encode_pairs(pairs, encode, block_size=policy.config.block_size)
    plain, _ = dpo_step(policy, reference, batch, beta=0.3)
    with_nll, stats = dpo_step(policy, reference, batch, beta=0.3, nll_weight=0.5)
    by_hand = [slow_sequence_logprobs(policy, batch["chosen_ids"][i : i + 1], batch["chosen_mask"][i : i + 1])[0]
               / int(batch["chosen_mask"][i, 1:].sum()) for i in range(2)]
    nll = -sum(float(x) for x in by_hand) / 2
    assert float(stats["chosen_nll"]) == pytest.approx(nll, abs=1e-5)
    assert with_nll.item() == pytest.approx(plain.item() + 0.5 * nll, abs=1e-5)
    one_line_error(lambda: dpo_step(policy, reference, batch, nll_weight=-1.0), "nll_weight")


def test_the_reference_is_not_moved_by_training():
    policy = tiny_gpt(seed=7)
    reference = reference_copy(policy)
    before = [p.clone() for p in reference.parameters()]
    batch = encode_pairs([PreferencePair("ab", "cd", "ef")], encode, block_size=16)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    loss, _ = dpo_step(policy, reference, batch, beta=0.1)
    loss.backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, reference.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


# --- errors --------------------------------------------------------------------------------

def test_an_identical_pair_is_a_one_line_error():
    one_line_error(lambda: PreferencePair("Q?", "same answer", "  same answer\n"),
                   "chosen and rejected answers are identical", "two different answers")


@pytest.mark.parametrize("fields", [("", "a", "b"), ("q", "   ", "b"), ("q", "a", None), (1, "a", "b")])
def test_an_empty_or_non_string_field_is_a_one_line_error(fields):
    one_line_error(lambda: PreferencePair(*fields), "PreferencePair.")


@pytest.mark.parametrize("beta", [0, 0.0, -0.1, float("nan"), float("inf"), "0.1", True])
def test_a_bad_beta_is_a_one_line_error(beta):
    logps = torch.zeros(3)
    one_line_error(lambda: dpo_loss(logps, logps, logps, logps, beta=beta), "beta")


def test_a_pair_longer_than_the_context_is_a_one_line_error():
    pairs = [PreferencePair("ab", "c", "d"), PreferencePair("abcdefgh", "ijklm", "nop")]
    message = one_line_error(lambda: encode_pairs(pairs, encode, block_size=10), "pair 1", "block_size is 10",
                             "shorten the prompt", "raise the context")
    assert "13" in message and "11" in message  # prompt + chosen and prompt + rejected lengths


def test_the_policy_as_its_own_reference_is_a_one_line_error():
    model = tiny_gpt()
    batch = encode_pairs([PreferencePair("ab", "cd", "ef")], encode, block_size=16)
    one_line_error(lambda: dpo_step(model, model, batch, beta=0.1), "same model", "reference_copy")


def test_bad_inputs_to_sequence_logprobs_are_one_line_errors():
    model = tiny_gpt()
    ids = torch.tensor([[1, 2, 3]])
    one_line_error(lambda: sequence_logprobs(model, ids, torch.tensor([[0, 1, 1]])), "response_mask")
    one_line_error(lambda: sequence_logprobs(model, ids, torch.tensor([[True, True, False]])), "first position")
    one_line_error(lambda: sequence_logprobs(model, ids.float(), ids > 0), "int64")
