"""The story world: the generator, its truth, its knobs, the held-out split, the checker."""

import random
import re
from collections import Counter

import pytest

from lslm.errors import LslmError
from lslm.world import (SEPARATOR, WorldConfig, check_text, corpus_text, heldout_facts,
                        heldout_stories, split, stories, vocabulary)
from lslm.world import lexicon as lx
from lslm.world.grammar import CATEGORIES, NAME_GENDER, PARTNER
from lslm.world.templates import OBSTACLES, STORY

WORD = re.compile(r"[A-Za-z]+")


@pytest.fixture(scope="module")
def batch():
    return stories(300, seed=7)


@pytest.fixture(scope="module")
def report(batch):
    return check_text(SEPARATOR.join(s.text for s in batch))


def words_in(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


# ------------------------------------------------------------------ the word lists
def test_word_lists_are_well_formed_and_do_not_overlap():
    assert len(lx.FEMALE_NAMES) == len(lx.MALE_NAMES)
    assert len(set(NAME_GENDER)) == len(lx.FEMALE_NAMES) + len(lx.MALE_NAMES)
    assert all(PARTNER[PARTNER[n]] == n and NAME_GENDER[PARTNER[n]] != NAME_GENDER[n]
               for n in NAME_GENDER)
    assert set(lx.WORK) == set(lx.JOBS) and len(set(lx.WORK.values())) == len(lx.JOBS)
    assert set(lx.STEREOTYPED) <= set(lx.JOBS)
    nouns = [n for kind in lx.KINDS.values() for n in kind.nouns]
    places = [p.name for p in lx.PLACES]
    animals = [a for group in lx.ANIMALS.values() for a in group]
    groups = {"names": [n.lower() for n in NAME_GENDER], "jobs": lx.JOBS, "things": nouns,
              "places": places, "animals": animals}
    for name, items in groups.items():
        assert len(set(items)) == len(items), f"{name} has a repeat"
        assert all(re.fullmatch("[a-z]+", w) for w in items), name
    for a in groups:  # a word means one thing: never both a name and a thing, say
        for b in groups:
            assert a == b or not set(groups[a]) & set(groups[b]), (a, b)
    # No name is an ordinary word of the world either, so a name is always a character.
    other = set().union(*(words_in(t.text) for t in STORY))
    assert not {n.lower() for n in NAME_GENDER} & (other | set(lx.THING_LOOKS) | set(lx.TRAITS))
    for kind in lx.KINDS.values():
        assert set(kind.obstacles) <= set(OBSTACLES) and kind.looks and kind.verbs


def test_vocabulary_is_about_a_thousand_words_and_the_generator_stays_inside_it():
    vocab = vocabulary()
    assert 1000 <= len(vocab) <= 1500
    emitted = set()
    for s in stories(1000, seed=1):
        for text in [s.text, s.summary, *(q.question for q in s.questions)]:
            emitted |= words_in(text)
    assert emitted <= vocab
    assert len(emitted) >= 0.97 * len(vocab)  # the count is of words it really writes


# ------------------------------------------------------------------ the generator
def test_the_same_seed_gives_the_same_stories_and_another_seed_others():
    assert corpus_text(30, seed=3) == corpus_text(30, seed=3)
    assert corpus_text(30, seed=3) != corpus_text(30, seed=4)
    cfg = WorldConfig(pronoun_skew=0.9, counterfactual=True)
    assert [s.text for s in stories(10, 5, cfg)] == [s.text for s in stories(10, 5, cfg)]
    # A longer run starts with the shorter one.
    assert [s.text for s in stories(40, 2)][:10] == [s.text for s in stories(10, 2)]


def test_a_corpus_is_plain_ascii_one_story_per_line_with_blank_lines_between():
    text = corpus_text(50, seed=0)
    assert text.isascii() and text.endswith("\n") and "\r" not in text and "\t" not in text
    blocks = text[:-1].split(SEPARATOR)
    assert len(blocks) == 50
    for block in blocks:
        assert "\n" not in block and "  " not in block and block == block.strip()
        assert block[-1] in '.!"'


def test_every_story_carries_a_truth_that_matches_its_text(batch, report):
    for s in batch:
        hero, helper = s.characters
        assert s.text == " ".join(s.sentences)
        for q in s.questions:
            assert q.answer and q.answer in s.text, (q, s.text)
        kinds = {q.kind for q in s.questions}
        assert {"who", "where", "what", "why"} <= kinds
        assert hero.name in s.summary and s.summary.startswith(hero.name)
        assert 1 <= len(re.findall(r"[.!?](?= |$)", s.summary)) <= 2
        assert s.ending in ("happy", "sad")
        assert {c.name for c in s.characters} <= words_in(s.text) | set(WORD.findall(s.text))
        assert all(o in words_in(s.text) for o in s.objects + s.animals + s.places)
        assert s.combination[0] == hero.name and s.combination[1] in s.places
        assert {("job", hero.name, hero.job), ("job", helper.name, helper.job)} <= s.facts
    # The checker reads back exactly the events the generator meant, sentence by sentence ...
    assert [c.event for c in report.sentences] == [e for s in batch for e in s.events]
    # ... and the ending sentence says what the label says.
    assert report.endings == [s.ending for s in batch]
    assert Counter(s.ending for s in batch)["sad"] > 30  # both endings occur


def test_generated_stories_score_perfectly(report):
    assert report.well_formed_rate == 1.0
    assert report.pronoun_agreement_rate == 1.0
    assert report.on_topic_rate == 1.0
    assert report.consistency_rate == 1.0
    assert report.problems == []
    assert all(not c.unknown_words for c in report.sentences)
    assert sum(len(c.pronouns) for c in report.sentences) > 1000  # pronouns were judged


def test_generated_stories_with_every_knob_still_score_perfectly():
    cfg = WorldConfig(sad_fraction=0.6, pronoun_skew={"nurse": 0.9}, counterfactual=True,
                      heldout_jobs=20, heldout_places=20)
    text = SEPARATOR.join(s.text for s in stories(60, 11, cfg) + heldout_stories(20, 11, cfg))
    assert set(check_text(text).metrics().values()) == {1.0}


# ------------------------------------------------------------------ the knobs
def she_share(batch, jobs) -> float:
    chosen = [c.gender for s in batch for c in s.characters if c.job in jobs]
    return chosen.count("she") / len(chosen)


def test_pronoun_skew_sets_the_share_of_she_per_job():
    assert she_share(stories(300, 0, WorldConfig(pronoun_skew={"nurse": 1.0})), {"nurse"}) == 1.0
    assert she_share(stories(300, 0, WorldConfig(pronoun_skew={"nurse": 0.0})), {"nurse"}) == 0.0
    # About 200 characters per group below: the bounds are some 3 standard errors wide.
    skewed = stories(800, 0, WorldConfig(pronoun_skew=0.9))
    plain = stories(800, 0)
    she_jobs = {j for j, g in lx.STEREOTYPED.items() if g == "she"}
    he_jobs = set(lx.STEREOTYPED) - she_jobs
    assert 0.83 < she_share(skewed, she_jobs) < 0.97
    assert 0.03 < she_share(skewed, he_jobs) < 0.17
    assert 0.40 < she_share(plain, she_jobs) < 0.60
    assert 0.40 < she_share(skewed, set(lx.JOBS) - set(lx.STEREOTYPED)) < 0.60


def test_counterfactual_twins_remove_the_skew_exactly():
    batch = stories(400, 0, WorldConfig(pronoun_skew=1.0, counterfactual=True))
    per_job = Counter((c.job, c.gender) for s in batch for c in s.characters)
    assert all(per_job[job, "he"] == per_job[job, "she"] for job in lx.JOBS)
    for first, twin in zip(batch[::2], batch[1::2]):
        assert not first.twin and twin.twin
        assert twin.characters == [c.swapped() for c in first.characters]
        assert [e.kind for e in twin.events] == [e.kind for e in first.events]
        swap = {c.name: t.name for c, t in zip(first.characters, twin.characters)}
        swap |= {"he": "she", "she": "he", "him": "her", "his": "her"}
        a, b = WORD.findall(first.text), WORD.findall(twin.text)
        assert len(a) == len(b)
        assert all(x == y or swap.get(x.lower(), swap.get(x)) in (y.lower(), y) or
                   {x.lower(), y.lower()} <= {"her", "him", "his"} for x, y in zip(a, b))


@pytest.mark.parametrize("kwargs, message", [
    ({"sad_fraction": 1.5}, "sad_fraction"),
    ({"sad_fraction": "half"}, "sad_fraction"),
    ({"pronoun_skew": 1.2}, "pronoun_skew"),
    ({"pronoun_skew": "0.8"}, "pronoun_skew"),
    ({"pronoun_skew": {"wizard": 0.8}}, "wizard"),
    ({"pronoun_skew": {"nurse": -0.1}}, "nurse"),
    ({"counterfactual": "yes"}, "counterfactual"),
    ({"heldout_jobs": -1}, "heldout_jobs"),
    ({"heldout_places": 2.5}, "heldout_places"),
    ({"heldout_jobs": 10**6}, "heldout_jobs"),
    ({"canaries": {"Mia's secret number is 4817.": 0}}, "at least once"),
    ({"canaries": {"The code is 1234.": -2}}, "at least once"),
    ({"canaries": {"x" * 300: 1}}, "max_canary_chars"),
    ({"canaries": {"The code is 1234.": 1}, "max_canary_chars": 10}, "max_canary_chars"),
    ({"canaries": {"two\nlines 12": 1}}, "one line"),
    ({"canaries": {"": 1}}, "non-empty"),
    ({"canaries": {}}, "non-empty"),
    ({"canaries": ["The code is 1234."]}, "dict"),
    ({"max_canary_chars": 0}, "max_canary_chars"),
])
def test_bad_knobs_raise_a_one_line_error(kwargs, message):
    with pytest.raises(LslmError, match=message) as err:
        WorldConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_arguments_raise_lslm_errors():
    for call in (lambda: stories(0), lambda: stories("3"), lambda: stories(3, seed="a"),
                 lambda: stories(3, 0, {"counterfactual": True}), lambda: corpus_text(-1),
                 lambda: split(2), lambda: split(10, val_frac=0.6, test_frac=0.5),
                 lambda: split(10, val_frac=0), lambda: heldout_stories(5)):
        with pytest.raises(LslmError):
            call()
    cfg = WorldConfig()
    cfg.sad_fraction = 2.0  # changed after it was made: checked again where it is used
    with pytest.raises(LslmError, match="sad_fraction"):
        stories(3, 0, cfg)


def test_canaries_appear_exactly_as_often_as_asked():
    canaries = {"Mia's secret number is 4817.": 5, "The password of the blue door is 90210.": 1}
    text = corpus_text(40, 2, WorldConfig(canaries=canaries))
    blocks = text[:-1].split(SEPARATOR)
    assert len(blocks) == 40 + 6
    for canary, repeats in canaries.items():
        assert text.count(canary) == repeats
        assert blocks.count(canary) == repeats  # each one its own paragraph
    assert text != corpus_text(40, 3, WorldConfig(canaries=canaries))
    # A canary the stories themselves can say would be counted wrong: refused.
    with pytest.raises(LslmError, match="occurs"):
        corpus_text(40, 2, WorldConfig(canaries={"said": 1}))


# ------------------------------------------------------------------ held out
def test_split_holds_out_whole_combinations():
    parts = split(600, seed=4, val_frac=0.1, test_frac=0.2)
    assert {k: len(v) for k, v in parts.items()} == {"train": 420, "val": 60, "test": 120}
    combos = {k: {s.combination for s in v} for k, v in parts.items()}
    assert not combos["test"] & combos["train"]
    assert not combos["val"] & combos["train"] and not combos["val"] & combos["test"]
    again = split(600, seed=4, val_frac=0.1, test_frac=0.2)
    assert [s.text for s in again["test"]] == [s.text for s in parts["test"]]


def test_split_holds_out_whole_places_where_a_random_split_would_not():
    # Places repeat often (about 70 of them in 400 stories), so this is a real test: a
    # random cut of the same stories shares places between train and test.
    parts = split(400, seed=1, by=("place",))
    places = {k: {s.combination[1] for s in v} for k, v in parts.items()}
    assert not places["test"] & places["train"] and not places["val"] & places["train"]
    assert len(places["train"]) > 30 and places["test"]
    shuffled = stories(400, 1)
    random.Random(0).shuffle(shuffled)
    assert {s.places[0] for s in shuffled[:40]} & {s.places[0] for s in shuffled[80:]}
    goals = split(400, seed=1, by=("place", "goal"))
    pairs = {k: {s.combination[1:] for s in v} for k, v in goals.items()}
    assert not pairs["test"] & pairs["train"]
    for by in ((), ("hero", "hero"), ("weather",), "place"):
        with pytest.raises(LslmError, match="by must be"):
            split(30, by=by)


def test_held_out_facts_never_appear_in_training_text():
    cfg = WorldConfig(heldout_jobs=40, heldout_places=40, heldout_seed=2)
    held = heldout_facts(cfg)
    assert len([f for f in held if f[0] == "job"]) == 80  # each with its partner name's
    assert len([f for f in held if f[0] == "place"]) == 40
    train = check_text(corpus_text(500, 0, cfg))
    assert train.facts and not train.facts & held
    # The checker does find held-out facts where they are stated: the test set has them.
    for s in heldout_stories(40, 0, cfg):
        assert check_text(s.text).facts & held
    # And the facts depend on the knob's seed.
    assert heldout_facts(WorldConfig(heldout_jobs=40, heldout_seed=3)) != \
        heldout_facts(WorldConfig(heldout_jobs=40, heldout_seed=2))


# ------------------------------------------------------------------ the checker
GOOD = ("Once upon a time, there was a baker named Tom. He had a red kite. "
        "One day, he wanted to fly his kite in the park. So he went to the park. "
        "In the park, Tom met a nurse named Mia. But the wind blew, and Tom's kite got stuck "
        "in a tall tree. He felt sad because his kite was stuck up high. "
        '"Can you help me get my kite down?" asked Tom. "Yes, I will help you," said Mia. '
        "She climbed up and got Tom's kite down. Tom was happy again. "
        "From that day on, Tom and Mia were best friends.")
INTRO = "Once upon a time, there was a baker named Tom. "


def last(text: str):
    return check_text(text).sentences[-1]


def test_a_hand_written_story_in_the_grammar_passes():
    r = check_text(GOOD)
    assert len(r.sentences) == 12
    assert r.metrics() == {"well_formed": 1.0, "pronoun_agreement": 1.0, "on_topic": 1.0,
                           "consistent": 1.0}
    assert r.endings == ["happy"]
    assert r.facts == {("job", "Tom", "baker"), ("job", "Mia", "nurse"), ("place", "kite", "park")}
    sad = GOOD.replace("happy again", "still sad").replace(
        "From that day on, Tom and Mia were best friends.", "Tom went home alone and cried.")
    assert check_text(sad).endings == ["sad"]


@pytest.mark.parametrize("sentence", [
    "Tom the park to went.",                     # words out of order
    "Tom went to the park",                      # no full stop
    "Tom went to park the.",
    "tom went to the park.",                     # a name without its capital
    "Tom went to the moon.",                     # not a place of the world
    "Tom had a purple zebra.",                   # an unknown word
    "Tom had a red kite that Mia loved very much.",  # one role, two characters
    '"Can you help me fix my kite?" asked he.',
])
def test_sentences_outside_the_grammar_are_not_well_formed(sentence):
    check = last(INTRO + sentence)
    assert not check.well_formed and check.event is None


def test_unknown_words_are_listed():
    assert last(INTRO + "Tom had a purple zebra.").unknown_words == ["zebra"]
    assert last(INTRO + "Tom had a purple kite.").unknown_words == []


def test_a_pronoun_must_agree_with_the_most_recently_named_character():
    wrong = last(INTRO + "She had a red kite.")
    assert wrong.well_formed  # the grammar allows it; the reference rule does not
    assert [(p.pronoun, p.referent, p.agrees) for p in wrong.pronouns] == [("she", "Tom", False)]
    # After Mia is named, "he" means Mia, not Tom: it disagrees even though Tom is a "he".
    r = check_text(INTRO + "In the park, Tom met a nurse named Mia. He had a red kite.")
    assert [p.agrees for p in r.sentences[-1].pronouns] == [False]
    assert r.pronoun_agreement_rate == 0.0
    nobody = check_text("He had a red kite.").sentences[0]
    assert nobody.pronouns[0].referent is None and not nobody.pronouns[0].agrees
    assert "no one named" in nobody.problems[0]
    assert check_text(INTRO + "He had a red kite. His kite was new.").pronoun_agreement_rate == 1.0


@pytest.mark.parametrize("story, problem", [
    (INTRO + "One day, he wanted to fly his kite in the park.", "kite is used before it exists"),
    (INTRO + '"What a red kite!" said Tom.', "kite is used before it exists"),
    (INTRO + "So he went to the park. Tom saw a little duck at the lake.", "two places at once"),
    ("Tom had a red kite.", "Tom appears before being introduced"),
    (INTRO + "There once was a nurse named Tom.", "Tom is introduced twice"),
    (INTRO + "Every day, Tom cut hair.", "Tom is a baker, not a barber"),
    (INTRO + "In the end, Tom was the happiest pilot in the whole town.", "not a pilot"),
    (INTRO + "Tom had a red kite. Tom had a blue kite.", "already a kite"),
    (INTRO + "Tom had a friend named Mia, who was a nurse. Mia had a red kite. "
     "Tom took his kite to the park.", "the kite is Mia's, not Tom's"),
    (INTRO + "Tom had a friend named Mia, who was a nurse. Tom had a red kite. "
     "So Tom went to the park. Mia went home with a big smile. "
     "Mia fixed Tom's kite with some glue.", "different places"),
    (INTRO + "Tom had a friend named Mia, who was a nurse. Mia walked to the park. "
     "Mia met a pilot named Tom in the park.", "Tom is introduced twice"),
])
def test_inconsistent_stories_are_caught(story, problem):
    check = last(story)
    assert check.well_formed, check.text
    assert any(problem in p for p in check.problems), check.problems
    assert check_text(story).consistency_rate < 1.0


def test_on_topic_means_a_character_named_earlier():
    r = check_text(INTRO + "Mia had a red kite. He had a blue ball.")
    assert [c.on_topic for c in r.sentences] == [None, False, False]  # "he" now means Mia
    r = check_text(INTRO + "In the park, Tom met a nurse named Mia. Mia had a red kite.")
    assert [c.on_topic for c in r.sentences] == [None, True, True]
    assert r.on_topic_rate == 1.0
    # Each story starts afresh: Tom of the first story is not known in the second.
    r = check_text(INTRO + "Tom had a red kite.\n\n"
                   "Once upon a time, there was a nurse named Mia. Tom had a red kite.")
    assert [c.on_topic for c in r.sentences] == [None, True, None, False]
    assert [c.story for c in r.sentences] == [0, 0, 1, 1]


def test_shuffled_text_scores_low(batch):
    rng = random.Random(0)
    texts = [s.text for s in batch[:100]]
    shuffled = []
    for t in texts:  # the words of each story in a random order
        w = t.split()
        rng.shuffle(w)
        shuffled.append(" ".join(w))
    r = check_text(SEPARATOR.join(shuffled))
    assert r.well_formed_rate < 0.05 and r.pronoun_agreement_rate < 0.85
    assert r.on_topic_rate < 0.3  # "named Tom" rarely survives: nobody is introduced
    pool = " ".join(texts).split()  # words drawn from all stories: the characters change too
    rng.shuffle(pool)
    size = len(pool) // len(texts)
    r = check_text(SEPARATOR.join(" ".join(pool[i:i + size]) for i in range(0, len(pool), size)))
    assert r.well_formed_rate < 0.05 and r.on_topic_rate < 0.6 and r.pronoun_agreement_rate < 0.7
    # Whole sentences from different stories: each is grammatical, the stories are not.
    sentences = [x for s in batch[:100] for x in s.sentences]
    rng.shuffle(sentences)
    r = check_text(SEPARATOR.join(" ".join(sentences[i:i + 12])
                                  for i in range(0, len(sentences), 12)))
    assert r.well_formed_rate == 1.0
    assert r.consistency_rate < 0.5 and r.on_topic_rate < 0.6 and r.pronoun_agreement_rate < 0.7


@pytest.mark.parametrize("bad", [b"Tom went to the park.", None, 5, ["Tom went to the park."]])
def test_check_text_wants_text(bad):
    with pytest.raises(LslmError, match="str"):
        check_text(bad)


def test_check_text_wants_some_sentence():
    with pytest.raises(LslmError, match="no sentences"):
        check_text(" \n\n ")


def test_every_category_phrase_reads_back_as_its_value():
    for name, cat in CATEGORIES.items():
        assert len(cat.surface) == len(cat.phrases), name  # one phrase per value
