"""Every sentence the world can say, grouped by the event it tells.

``STORY`` is the grammar the checker accepts; ``SUMMARY`` and ``QUESTIONS`` are the
truth's own sentences (never in story text, but in the vocabulary count).

Effects (read by ``lslm.world.check``) say what a sentence does to the story's state:

``intro X job``   X appears for the first time, with that job
``isjob X job``   X has that job               ``at X place``  X is at that place now
``go X place``    X moves to that place        ``go X home``   X goes home
``new obj X``     a new thing, owned by X      ``own X obj``   X owns that thing now
``use obj``       the thing exists already     ``near X Y``    X and Y are in one place
"""

from __future__ import annotations

from lslm.world.grammar import Template


def _group(kind: str, texts: list[str], effects: str = "", **fixed: str) -> list[Template]:
    fx = tuple(e.strip() for e in effects.split(",") if e.strip())
    return [Template(kind, t, tuple(fixed.items()), fx) for t in texts]


# What can go wrong, and how a helper puts it right (or fails to). ``reason`` completes
# "because ..." and "but ...".
OBSTACLES: dict[str, dict[str, list[str] | str]] = {
    "broken": dict(
        problem=["But then, {A:p} {obj} fell and broke.", "But {A:p} {obj} broke."],
        reason="{A:p} {obj} was broken", help="fix my {obj}",
        fix=["{B} fixed {A:p} {obj} with some glue.", "{B} worked hard and fixed {A:p} {obj}."],
        fail=["{B} tried hard, but {B} could not fix {A:p} {obj}."]),
    "lost": dict(
        problem=["But then, {A} lost {A:p} {obj}.",
                 "But when {A} looked again, {A:p} {obj} was gone."],
        reason="{A} could not find {A:p} {obj}", help="find my {obj}",
        fix=["{B} looked everywhere and found {A:p} {obj}.",
             "{B} found {A:p} {obj} behind a big rock."],
        fail=["{B} looked everywhere, but {B} could not find {A:p} {obj}."]),
    "stuck_high": dict(
        problem=["But the wind blew, and {A:p} {obj} got stuck in a tall tree.",
                 "But {A:p} {obj} ended up on top of a high wall."],
        reason="{A:p} {obj} was stuck up high", help="get my {obj} down",
        fix=["{B} climbed up and got {A:p} {obj} down.",
             "{B} found a ladder and got {A:p} {obj} down."],
        fail=["{B} tried to climb up, but {A:p} {obj} was too high."]),
    "stuck_mud": dict(
        problem=["But {A:p} {obj} got stuck in the mud."],
        reason="{A:p} {obj} was stuck in the mud", help="pull my {obj} out of the mud",
        fix=["{B} pulled {A:p} {obj} out of the mud."],
        fail=["{B} pulled and pulled, but {A:p} {obj} would not move."]),
    "dirty": dict(
        problem=["But {A:p} {obj} fell in the mud.", "But {A} dropped {A:p} {obj} in a puddle."],
        reason="{A:p} {obj} was all dirty", help="clean my {obj}",
        fix=["{B} washed {A:p} {obj} with soap and water.",
             "{B} cleaned {A:p} {obj} until it was shiny."],
        fail=["{B} tried to clean {A:p} {obj}, but the mud would not come off."]),
    "torn": dict(
        problem=["But {A:p} {obj} got caught on a branch and tore."],
        reason="{A:p} {obj} was torn", help="sew my {obj}",
        fix=["{B} took a needle and sewed {A:p} {obj}."],
        fail=["{B} tried to sew {A:p} {obj}, but the hole was too big."]),
    "wet": dict(
        problem=["But it started to rain, and {A:p} {obj} got wet.",
                 "But {A} dropped {A:p} {obj} in the water."],
        reason="{A:p} {obj} was wet", help="dry my {obj}",
        fix=["{B} dried {A:p} {obj} with a soft towel."],
        fail=["{B} tried to dry {A:p} {obj}, but it stayed wet."]),
    "heavy": dict(
        problem=["But {A:p} {obj} was too heavy to carry."],
        reason="{A:p} {obj} was too heavy", help="carry my {obj}",
        fix=["{B} helped {A:o} carry {A:p} {obj}."],
        fail=["{B} tried to lift {A:p} {obj}, but it would not move."]),
}


def _obstacle_templates() -> list[Template]:
    out = []
    for name, o in OBSTACLES.items():
        reason, ask = o["reason"], f"Can you help me {o['help']}"
        out += _group("problem", o["problem"], "own A obj", obstacle=name)
        out += _group("because", [f"{{A}} felt {{bad}} because {reason}.",
                                  f"{{A}} was {{bad}} because {reason}."],
                      "own A obj", obstacle=name)
        out += _group("ask", [f'"{ask}?" asked {{A:n}}.', f'"{ask}?" {{A:s}} asked.'],
                      "own A obj", obstacle=name)
        out += _group("ask", [f'{{A}} asked {{B:o}}, "{ask}?"',
                              f'"{{B:n}}, can you help me {o["help"]}?" asked {{A:n}}.'],
                      "own A obj, near A B", obstacle=name)
        out += _group("fix", o["fix"], "own A obj, near A B", obstacle=name)
        out += _group("fail", o["fail"], "own A obj, near A B", obstacle=name)
    return out


STORY: list[Template] = [
    *_group("intro", ["Once upon a time, there was {a_job} named {A:n}.",
                      "Once upon a time, there lived {a_job} named {A:n}.",
                      "There once was {a_job} named {A:n}.",
                      "Long ago, in a small town, there lived {a_job} named {A:n}."],
            "intro A job"),
    *_group("trait", ["{A} was very {trait}.", "Everyone knew that {A} was {trait}.",
                      "{A} was {trait} and liked to help others."]),
    *_group("friend", ["{A} had a friend named {B:n}, who was {a_job}.",
                       "{A:p} best friend was {a_job} named {B:n}.",
                       "{A} lived next to {a_job} named {B:n}."], "intro B job"),
    *_group("has", ["{A} had {a_adj} {obj}.", "{A} had {a_adj} {obj} that {A} loved very much.",
                    "{A:p} favorite thing was {a_adj} {obj}."], "new obj A"),
    *_group("work", ["Every day, {A} {work}.", "{A} loved {A:p} job, and every day {A} {work}."],
            "isjob A job"),
    *_group("goal", ["{when}, {A} wanted to {verb} {A:p} {obj} {at_place}.",
                     "{when}, {A} decided to {verb} {A:p} {obj} {at_place}.",
                     "{A} really wanted to {verb} {A:p} {obj} {at_place}."], "own A obj"),
    *_group("go", ["So {A} went to the {place}.", "{A} walked to the {place}.",
                   "{A} ran all the way to the {place}."], "go A place"),
    *_group("take", ["{A} took {A:p} {obj} to the {place}.",
                     "{A} went to the {place} with {A:p} {obj}."], "go A place, own A obj"),
    *_group("go_together", ["{A:n} and {B:n} went to the {place} together.",
                            "{A} went to the {place}, and {B:n} came too."],
            "go A place, go B place"),
    *_group("scene", ["{A} saw {a_look} {animal} {at_place}.",
                      "{at_place}, {A} heard {a_look} {animal}.",
                      "{A} watched {a_look} {animal} {at_place}.",
                      "{A} waved at {a_look} {animal} {at_place}."],
            "at A place"),
    *_group("scene", ["The sun was shining, and {A} felt {good}.", "{A} looked around and smiled.",
                      "A soft wind was blowing, and {A} felt {good}.",
                      "The sky was blue, and {A} felt {good}."]),
    *_group("meet", ["{at_place}, {A} met {a_job} named {B:n}.",
                     "{A} met {a_job} named {B:n} {at_place}."],
            "at A place, intro B job, at B place"),
    *_group("admire", ['"What {a_adj} {obj}!" said {B:n}.', '"What {a_adj} {obj}!" {B:s} said.'],
            "use obj"),
    *_obstacle_templates(),
    *_group("reply", ['"Yes, I will help you," said {B:n}.', '"Yes, I will help you," {B:s} said.',
                      '"Do not worry, I can help," said {B:n}.', '"Of course!" said {B:n}.',
                      '"Let me try," {B:s} said.']),
    *_group("glad", ["{A} was {good} again.", "{A} felt so {good}."]),
    *_group("glad", ['{A} smiled and said, "Thank you, {B:n}!"', '"Thank you, {B:n}!" said {A:n}.'],
            "near A B"),
    *_group("still_sad", ["{A} was still {bad}.", "{A} began to cry."]),
    *_group("sorry", ['"I am so sorry," said {B:n}.', '"I am so sorry," {B:s} said.']),
    *_group("play", ["{A:n} and {B:n} {activity} {at_place}.",
                     "Then {A:n} and {B:n} {activity} together."],
            "at A place, at B place"),
    *_group("play_goal", ["{A} and {B:n} {verbed} the {obj} together."], "use obj, near A B"),
    *_group("gift", ["To say thank you, {A} gave {B:o} {a_adj2} {obj2}."], "near A B, new obj2 B"),
    *_group("end", ["From that day on, {A:n} and {B:n} were best friends.",
                    "{A:n} and {B:n} were good friends from then on.",
                    "It was the best day ever for {A:o}."], "", mood="happy"),
    *_group("end", ["{A} went home with a big smile."], "go A home", mood="happy"),
    *_group("end", ["In the end, {A} was the happiest {job} in the whole town."], "isjob A job",
            mood="happy"),
    *_group("end", ["It was a very sad day for {A:o}.",
                    "That night, {A} felt {bad} and could not sleep."],
            "", mood="sad"),
    *_group("end", ["{A} went home alone and cried.",
                    "In the end, {A} walked home slowly, still {bad}."],
            "go A home", mood="sad"),
]

# The truth's sentences: a two-sentence summary for each ending and obstacle, and questions.
SUMMARY: list[Template] = []
for _name, _o in OBSTACLES.items():
    _goal = "{A:n}, {a_job}, wanted to {verb} {A:p} {obj} {at_place}, but " + _o["reason"] + "."
    SUMMARY += _group("summary", [_goal + " {B:n} helped, so in the end {A} was {good}."],
                      obstacle=_name, mood="happy")
    SUMMARY += _group("summary", [_goal + " {B:n} tried to help, but {A} stayed {bad}."],
                      obstacle=_name, mood="sad")

QUESTIONS: list[Template] = [
    *_group("who", ["Who helped {A:n}?"], mood="happy"),
    *_group("who", ["Who tried to help {A:n}?"], mood="sad"),
    *_group("where", ["Where did {A:n} go?"]),
    *_group("what", ["What did {A:n} have?"]),
    *_group("why", ["Why was {A:n} {bad}?"]),
    *_group("job", ["What job did {B:n} have?"]),
]
