"""From a language model to an assistant, on the story world.

The world knows the answer to every question about its stories, so each step of making an
assistant can be scored against the truth:

* ``instructions``: one instruction data set that mixes three tasks about a story: answer
  its questions, say whether it ends happily or sadly, summarize it.
* ``plain_prompt``: the same tasks asked of the base model in plain text.
* ``score``: 1 for a right answer or ending, and for a summary the share of the true
  summary's facts it gets right (``lslm.summarize.fact_coverage``).
* ``chat_model`` / ``chat_examples``: the base model with room for a chat template's special
  tokens, and the instructions as (prompt, answer) examples for masked fine-tuning.
* ``reply`` / ``greedy_answer``: the assistant's greedy answer, up to its end marker.
* ``assistant_lm``: the world model instruction-tuned with a chat template, trained once and
  cached like ``world_lm``.
* ``false_answer``: a wrong answer that sounds right (the story's other character, another
  place or thing, the other ending): the rejected side of a DPO preference pair.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Sequence

import torch

from lslm.devices import model_device
from lslm.errors import LslmError
from lslm.finetune import Example, add_token_rows, encode_example, finetune, with_context
from lslm.model import GPT
from lslm.summarize import fact_coverage
from lslm.tasks.qa import is_exact_match
from lslm.tokenizers import ChatTemplate, ChatTokenizer, Tokenizer, check_chat_tokenizer
from lslm.utils import evaluating
from lslm.world import Story, split
from lslm.world import lexicon as lx

TASKS = ("answer", "ending", "summary")
ENDING_QUESTION = "Did the story end happily or sadly?"
SUMMARY_REQUEST = "Summarize the story."
ASSISTANT_VERSION = 3


@dataclass(frozen=True)
class Instruction:
    """One task about one story: what the user asks and the true answer."""

    task: str  # "answer", "ending" or "summary"
    story: Story
    request: str  # the question or request that follows the story
    answer: str

    @property
    def instruction(self) -> str:
        return f"{self.story.text}\n{self.request}"


def instructions(stories: Sequence[Story], tasks: Sequence[str] = TASKS) -> list[Instruction]:
    """The instructions of each story, task by task: every one of its questions (who, where,
    what, why, the helper's job), whether it ends happily or sadly, and its summary.

    Every question of every story, not one at random: with one question per story, 600 steps
    of tuning left "Who helped X?" answered with X itself; with all five, the assistant
    named the helper in 60% of held-out stories (benchmarks/RESULTS.md).
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise LslmError(f"unknown task {', '.join(map(repr, unknown)) or '(none)'}: use some of {', '.join(TASKS)}")
    out = []
    for story in stories:
        for task in tasks:
            if task == "answer":
                out += [Instruction(task, story, q.question, q.answer) for q in story.questions]
            elif task == "ending":
                out.append(Instruction(task, story, ENDING_QUESTION, "happily" if story.ending == "happy" else "sadly"))
            else:
                out.append(Instruction(task, story, SUMMARY_REQUEST, story.summary))
    return out


def score(item: Instruction, reply: str) -> float:
    """How right ``reply`` is: 1 or 0 for an answer or an ending (SQuAD's exact match: the same
    words as the truth, case, punctuation and a/an/the aside); for a summary, the share of
    its true facts it states."""
    if item.task == "summary":
        return fact_coverage(reply, item.story)
    return float(is_exact_match(reply, item.answer))


def plain_prompt(item: Instruction) -> str:
    """The task in plain text, for the base model: the story, the request, "Answer:"."""
    return f"{item.instruction}\nAnswer:"


# --------------------------------------------------------------------------- chat
def chat_example(tokenizer: ChatTokenizer, item: Instruction, block_size: int,
                 template: ChatTemplate | None = None) -> Example:
    """The instruction as a chat prompt and its true answer as the response (masked loss)."""
    template = template or getattr(tokenizer, "template", None) or ChatTemplate()
    check_chat_tokenizer(tokenizer, template)
    return encode_example(tokenizer.encode, template.prompt(" " + item.instruction),
                          template.response(" " + item.answer), block_size)


def chat_examples(tokenizer: ChatTokenizer, items: Sequence[Instruction], block_size: int) -> list[Example]:
    """The items that fit in ``block_size`` tokens, as chat examples (longer ones are left out)."""
    check_chat_tokenizer(tokenizer, getattr(tokenizer, "template", None) or ChatTemplate())
    out = []
    for item in items:
        try:
            out.append(chat_example(tokenizer, item, block_size))
        except LslmError:  # too long for the context: the only error left after the check above
            continue
    return out


def chat_model(base: GPT, tokenizer: Tokenizer, block_size: int = 288,
               template: ChatTemplate | None = None) -> tuple[GPT, ChatTokenizer]:
    """The base model with room for the template's markers and a longer (RoPE) context, and
    its chat tokenizer: the starting point of instruction tuning."""
    chat_tok = ChatTokenizer(tokenizer, template)
    model = add_token_rows(with_context(base, block_size), len(chat_tok.special_ids))
    return model, chat_tok


@torch.no_grad()
def greedy_answer(model: GPT, tokenizer: ChatTokenizer, instruction: str,
                  max_new_tokens: int = 48) -> tuple[list[int], list[int], bool]:
    """The chat prompt's ids, the ids the model wrote greedily up to and including its end
    marker (or as many as fit), and whether it wrote the end marker."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise LslmError("the instruction must be non-empty text: a story and a question, say")
    template = tokenizer.template
    prompt = tokenizer.encode(template.prompt(" " + instruction))  # a space before, as in training
    if len(prompt) >= model.config.block_size:
        raise LslmError(f"the instruction takes {len(prompt)} tokens and the model reads "
                        f"{model.config.block_size}: shorten it")
    end = tokenizer.special_ids[template.end]
    room = min(max_new_tokens, model.config.block_size - len(prompt))
    with evaluating(model):
        got = model.generate(torch.tensor([prompt], device=model_device(model)), room,
                             temperature=0.0, stop_ids=[end])[0, len(prompt):].tolist()
    return prompt, (got[: got.index(end) + 1] if end in got else got), end in got


def answer_text(tokenizer: ChatTokenizer, written: Sequence[int]) -> str:
    """The text of an answer's ids: markers (the end, or one written by mistake) left out."""
    return tokenizer.decode([i for i in written if i < tokenizer.base.vocab_size]).strip()


def reply(model: GPT, tokenizer: ChatTokenizer, instruction: str, max_new_tokens: int = 48) -> str:
    """The assistant's greedy answer to ``instruction``, up to its end marker."""
    return answer_text(tokenizer, greedy_answer(model, tokenizer, instruction, max_new_tokens)[1])


# ------------------------------------------------------------------- cached assistant
@dataclass(frozen=True)
class AssistantRecipe:
    """How ``assistant_lm`` instruction-tunes the world model (measured in RESULTS.md)."""

    stories: int = 1500  # of split(stories, seed): its train part becomes instructions
    seed: int = 1
    block_size: int = 288
    steps: int = 900
    batch_size: int = 8
    lr: float = 2e-3
    train_seed: int = 0

    def fingerprint(self, base_fingerprint: str) -> str:
        text = json.dumps({**self.__dict__, "v": ASSISTANT_VERSION, "base": base_fingerprint}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def world_instructions(recipe: AssistantRecipe | None = None) -> dict[str, list[Instruction]]:
    """The instruction sets of the recipe's train, val and test stories (test: whole
    character x place x goal combinations that train never has)."""
    recipe = recipe or AssistantRecipe()
    parts = split(recipe.stories, seed=recipe.seed)
    return {name: instructions(stories) for name, stories in parts.items()}


def train_assistant(base: GPT, tokenizer: Tokenizer, recipe: AssistantRecipe | None = None, *,
                    progress: bool = False) -> tuple[GPT, ChatTokenizer, list[float]]:
    """Instruction-tune ``base`` on the mixed tasks (loss masked to the answers)."""
    recipe = recipe or AssistantRecipe()
    model, chat_tok = chat_model(base, tokenizer, recipe.block_size)
    examples = chat_examples(chat_tok, world_instructions(recipe)["train"], recipe.block_size)
    losses = finetune(model, examples, steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr,
                      seed=recipe.train_seed, progress=progress)
    return model, chat_tok, losses


TRAINED = {"count": 0}  # how many times this process trained an assistant (the tests read it)


def assistant_lm(recipe: AssistantRecipe | None = None, *, world_recipe=None,
                 progress: bool = False) -> tuple[GPT, ChatTokenizer]:
    """The instruction-tuned world model and its chat tokenizer, trained once and cached in
    ``LSLM_CACHE`` next to the world model (about a minute on a 2-core CPU). A cached file
    that is corrupt, or another recipe's or base model's, is trained again."""
    from lslm.checkpoint import checkpoint_file, load_checkpoint, load_model, save_checkpoint
    from lslm.data import build_lock, cache_dir
    from lslm.world_model import WorldRecipe, world_lm

    recipe = recipe or AssistantRecipe()
    world_recipe = world_recipe or WorldRecipe()
    base, tokenizer = world_lm(world_recipe, progress=progress)
    fingerprint = recipe.fingerprint(world_recipe.fingerprint())
    folder = cache_dir() / "models" / f"assistant-v{ASSISTANT_VERSION}-{fingerprint}"
    with build_lock(folder):  # a notebook running alongside may be training it right now
        if checkpoint_file(folder).exists():
            try:
                if (load_checkpoint(folder).get("meta") or {}).get("assistant_fingerprint") != fingerprint:
                    raise LslmError("another recipe's assistant")
                model, chat_tok = load_model(folder)
                return model.eval(), chat_tok
            except LslmError as e:
                print(f"note: the cached assistant could not be used ({e}); training it again")
        model, chat_tok, _ = train_assistant(base, tokenizer, recipe, progress=progress)
        TRAINED["count"] += 1
        try:
            save_checkpoint(folder, model=model.state_dict(), model_config=model.config.to_dict(),
                            tokenizer=chat_tok.state(), meta={"assistant_fingerprint": fingerprint})
        except LslmError as e:
            print(f"note: could not cache the assistant ({e}); set LSLM_CACHE")
        return model, chat_tok


# ------------------------------------------------------------------- preferences
def false_answer(item: Instruction, rng: random.Random) -> str:
    """A wrong answer that sounds right: the story's other character, another place, another
    thing, the other ending."""
    story = item.story
    names = [c.name for c in story.characters]
    if item.task == "ending":
        return "sadly" if item.answer == "happily" else "happily"
    if item.answer in names:
        return next(n for n in names if n != item.answer)
    place = story.places[0]
    if item.answer == f"the {place}":
        return "the " + rng.choice([p.name for p in lx.PLACES if p.name != place])
    for thing in story.objects:
        if thing in item.answer.split():
            other = rng.choice([t for k in lx.KINDS.values() for t in k.nouns if t != thing])
            return item.answer.replace(thing, other)
    if item.answer.startswith(("a ", "an ")):
        job = item.answer.split(" ", 1)[1]
        other = rng.choice([j for j in lx.JOBS if j != job])
        return ("an " if other[0] in "aeiou" else "a ") + other
    # a "why": blame the other character instead
    return item.answer.replace(names[0], names[1]) if names[0] in item.answer else item.answer + " again"
