"""A small story world whose truth judges every task.

TinyStories (Eldan & Li, 2023) showed that models of a few million parameters write
fluent English when trained on simple stories with a small vocabulary. This package
writes such stories itself, so it knows the truth about every one of them:

* ``stories(n, seed, config)`` / ``iter_stories`` / ``corpus_text(n, seed, config)``:
  deterministic stories from a seed, each a ``Story`` with its events, summary,
  questions and answers, ending and entities. A corpus is plain ASCII, one story per
  line, a blank line between stories (``SEPARATOR``).
* ``WorldConfig``: knobs, all off by default: pronoun skew by job, counterfactual
  gender-swapped twins, held-out world facts, planted canaries.
* ``split(n, seed, config)``: train/val/test that hold out whole combinations
  (hero x place x goal); ``heldout_stories`` states the facts training never saw.
* ``check_text(text)``: a ``Report`` of well-formedness (the closed template grammar),
  pronoun agreement, staying on topic and story consistency, per sentence and overall.

The vocabulary (``vocabulary()``) has about 1,100 words; the word lists live in
``lslm.world.lexicon``, the sentence templates in ``lslm.world.templates`` and the
reference rule (a pronoun means the most recently named character) in
``lslm.world.grammar``.
"""

from lslm.world.check import (PronounCheck, Report, SentenceCheck, check_text, sentences_of,
                              vocabulary)
from lslm.world.generate import (SEPARATOR, Question, Story, WorldConfig, corpus_text,
                                 heldout_facts, heldout_stories, iter_stories, split, stories)
from lslm.world.grammar import Character, Event

__all__ = [
    "Character", "Event", "PronounCheck", "Question", "Report", "SEPARATOR", "SentenceCheck",
    "Story", "WorldConfig", "check_text", "corpus_text", "heldout_facts", "heldout_stories",
    "iter_stories", "sentences_of", "split", "stories", "vocabulary",
]
