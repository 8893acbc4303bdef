"""Exercises of notebook 06: sampling."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "top_p_kept",
    "Nucleus sampling with top_p: how many tokens of `probs` are kept?",
    "sort the probabilities from high to low and keep adding them up; keep tokens until "
    "the running total reaches top_p (the token that crosses top_p is kept too)",
    rel_tol=0.0,
)
def _top_p_kept(probs, top_p: float) -> int:
    import torch

    from lslm.model import next_token_probs

    p = torch.as_tensor(probs, dtype=torch.float64)
    return int((next_token_probs(p.log().unsqueeze(0), 1.0, None, top_p) > 0).sum())


@exercise(
    "pronouns_that_disagree",
    "How many pronouns in `story` do not agree with the character they refer to?",
    "in the story world a pronoun (he, she, his, her, him) means the character named most "
    "recently before it; count those whose gender is not that character's",
    rel_tol=0.0,
)
def _pronouns_that_disagree(story: str) -> int:
    from lslm.world import check_text

    return sum(not p.agrees for s in check_text(story).sentences for p in s.pronouns)
