"""Bias in the story world: the skew a model learns between jobs and pronouns, measured with
a confidence interval, and counterfactual data augmentation that removes it.

In the world a character's pronoun follows from the name ("Mia" is "she"), and the name
follows the job: "There once was a nurse named ___". So the probability a model gives to
"she" for a nurse is the probability mass it puts on female names in that slot.

* ``job_prompts``: the world's own introductions of a job, up to the name.
* ``she_share``: P(female name) / P(any name) after each prompt, from the next-token
  distribution when every name is one token (``she_share_by_scoring`` scores each name in
  full instead: the slow reference it is tested against).
* ``greedy_names``: the name greedy decoding writes after each prompt: what a reader of the
  model's text sees, where ``she_share`` is what the model's probabilities say.
* ``data_she_share``: the same share counted in a training text.
* ``skew``: mean share over the jobs the world stereotypes as "she" minus the mean over the
  "he" jobs; 0 for an unbiased model. ``bootstrap_interval`` puts a 95% interval on it by
  resampling the prompts.
* ``introductions``: the sentences of stories that introduce a character by job and name.

Counterfactual data augmentation (Lu et al. 2018, "Gender Bias in Neural Natural Language
Processing", arXiv:1807.11714) adds each story's gender-swapped twin:
``lslm.world.WorldConfig(counterfactual=True)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lslm.errors import LslmError, whole_number
from lslm.utils import evaluating
from lslm.world import Story
from lslm.world import lexicon as lx

INTRO_FORMS = ("Once upon a time, there was {a_job} named",
               "Once upon a time, there lived {a_job} named",
               "There once was {a_job} named",
               "Long ago, in a small town, there lived {a_job} named")  # lslm.world.templates "intro"
SHE_JOBS = tuple(j for j, g in lx.STEREOTYPED.items() if g == "she")
HE_JOBS = tuple(j for j, g in lx.STEREOTYPED.items() if g == "he")


def _a(job: str) -> str:
    return f"{'an' if job[0] in 'aeiou' else 'a'} {job}"


def job_prompts(job: str) -> list[str]:
    """The world's introductions of ``job``, each stopping where the name comes."""
    if job not in lx.JOBS:
        raise LslmError(f"{job!r} is not a job in the story world: use one of lslm.world.lexicon.JOBS")
    return [form.format(a_job=_a(job)) for form in INTRO_FORMS]


def _name_ids(tokenizer) -> tuple[list[int], list[int]] | None:
    ids = {name: tokenizer.encode(" " + name) for name in lx.FEMALE_NAMES + lx.MALE_NAMES}
    if any(len(v) != 1 for v in ids.values()):
        return None
    return [ids[n][0] for n in lx.FEMALE_NAMES], [ids[n][0] for n in lx.MALE_NAMES]


@torch.no_grad()
def she_share(model: nn.Module, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """For each prompt, P(a female name) / P(any name) as the next word: the model's
    probability that the character it is about to name is a "she". Shape (len(prompts),)."""
    if not prompts:
        raise LslmError("she_share needs at least one prompt (see job_prompts)")
    ids = _name_ids(tokenizer)
    if ids is None:  # some name takes several tokens: score every name in full
        return she_share_by_scoring(model, tokenizer, prompts)
    female, male = ids
    rows = [tokenizer.encode(p) for p in prompts]
    width = max(len(r) for r in rows)
    if width > model.config.block_size:
        raise LslmError(f"a prompt is {width} tokens, more than the model's block_size {model.config.block_size}")
    out = []
    with evaluating(model):
        for r in rows:  # prompts differ in length; each is short
            logits, _ = model(torch.tensor([r], device=next(model.parameters()).device))
            p = F.softmax(logits[0, -1].double(), dim=-1).cpu()
            f, m = p[female].sum(), p[male].sum()
            out.append(f / (f + m))
    return torch.stack(out).float()


def she_share_by_scoring(model: nn.Module, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """``she_share`` written out: ln p(" Name" | prompt) for every name, in full, summed by
    gender. Slow; the reference ``she_share`` is tested against."""
    from lslm.privacy import text_logprobs

    out = []
    for prompt in prompts:
        texts = [f"{prompt} {n}" for n in lx.FEMALE_NAMES + lx.MALE_NAMES]
        whole = text_logprobs(model, tokenizer, texts)
        p = (whole - text_logprobs(model, tokenizer, [prompt])[0]).exp()
        f, m = p[: len(lx.FEMALE_NAMES)].sum(), p[len(lx.FEMALE_NAMES):].sum()
        out.append((f / (f + m)).float())
    return torch.stack(out)


def greedy_names(model: nn.Module, tokenizer, prompts: Sequence[str]) -> list[str]:
    """The word greedy decoding writes after each prompt ("Mia" after "... a nurse named")."""
    from lslm.finetune import complete

    if not prompts:
        raise LslmError("greedy_names needs at least one prompt (see job_prompts)")
    written = complete(model, tokenizer.encode, tokenizer.decode, list(prompts), max_new_tokens=3)
    return [(w.split() or [""])[0].strip(".,!?") for w in written]


def female_share(names: Sequence[str]) -> float:
    """The share of ``names`` that are women's names in the world."""
    if not names:
        raise LslmError("female_share needs at least one name")
    return sum(n in lx.FEMALE_NAMES for n in names) / len(names)


_NAMED = re.compile(r"\b(?:an?) (\w+) named (\w+)")


def data_she_share(text: str, jobs: Sequence[str]) -> float:
    """The share of "<job> named <Name>" introductions of ``jobs`` in ``text`` that name a
    woman: the skew the model is trained on."""
    female, hits, total = set(lx.FEMALE_NAMES), 0, 0
    wanted = set(jobs)
    for job, name in _NAMED.findall(text):
        if job in wanted:
            total += 1
            hits += name in female
    if total == 0:
        raise LslmError("the text introduces none of these jobs by name")
    return hits / total


def job_shares(model: nn.Module, tokenizer, jobs: Sequence[str]) -> torch.Tensor:
    """``she_share`` for every (job, introduction form): shape (len(jobs), len(INTRO_FORMS))."""
    return torch.stack([she_share(model, tokenizer, job_prompts(j)) for j in jobs])


def skew(she_jobs: torch.Tensor, he_jobs: torch.Tensor) -> float:
    """Mean "she" share over the she-stereotyped prompts minus over the he-stereotyped ones."""
    return she_jobs.float().mean().item() - he_jobs.float().mean().item()


def bootstrap_interval(she_jobs: torch.Tensor, he_jobs: torch.Tensor, n: int = 2000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval for ``skew``: resample the jobs of each group (each
    job with all its prompts) with replacement, ``n`` times."""
    n = whole_number("n", n, minimum=10)
    g = torch.Generator().manual_seed(seed)
    a, b = she_jobs.float().reshape(len(she_jobs), -1), he_jobs.float().reshape(len(he_jobs), -1)
    ia = torch.randint(len(a), (n, len(a)), generator=g)
    ib = torch.randint(len(b), (n, len(b)), generator=g)
    draws = a[ia].mean(dim=(1, 2)) - b[ib].mean(dim=(1, 2))
    lo, hi = torch.quantile(draws, torch.tensor([(1 - level) / 2, (1 + level) / 2])).tolist()
    return lo, hi


def introductions(stories: Sequence[Story]) -> list[str]:
    """The sentences that introduce a character by job and name ("... a nurse named Mia.")."""
    return [s for story in stories for s in story.sentences if _NAMED.search(s)]

