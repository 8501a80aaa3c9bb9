"""bAbI-style question-answering stories from seqlab's own simulator.

Weston et al. 2015, "Towards AI-Complete Question Answering: A Set of
Prerequisite Toy Tasks" (sec. 3) describe 20 toy tasks generated from a small
simulated world.  The official files cannot be obtained offline, so this
module simulates such a world itself and writes stories for ten of the tasks
from the paper's descriptions:

====  =======================  ====================================================
task  name                     question (answer)
====  =======================  ====================================================
1     single supporting fact   Where is Mary? (office)
2     two supporting facts     Where is the football? (location of whoever has it)
3     three supporting facts   Where was the apple before the kitchen? (location)
6     yes/no questions         Is John in the playground? (yes / no)
7     counting                 How many objects is Daniel carrying? (none .. three)
8     lists/sets               What is Daniel carrying? (apple,milk / nothing)
11    basic coreference        Where is Daniel? (he / she refer to the previous subject)
15    basic deduction          What is Gertrude afraid of? (wolves)
16    basic induction          What color is Greg? (colour of another of his species)
17    positional reasoning     Is the triangle above the red square? (yes / no)
====  =======================  ====================================================

**These are not the official bAbI data**: vocabulary, story lengths and the
exact rules of our world differ from Facebook's generator, so accuracies on
them are comparable with published bAbI numbers in spirit only.  Every table
that shows results on them must say so.

Format: like bAbI, a story interleaves statements and questions; each
question becomes one :class:`Story` whose ``sentences`` are the statements
before it (questions are left out) and whose ``support`` lists the indices of
the statements that determine the answer.  ``n`` in :func:`generate` counts
questions, as the "1k" / "10k" of bAbI do.  Task 8 answers are one token
(``apple,football``, sorted; ``nothing`` when empty), so every task is a
single-word classification.

Rules of the world (the answers follow from them alone):

* people start nowhere known; "X went to L" puts X in L.
* a free object lies where it was dropped (nowhere known before it is first
  picked up); a person may pick it up only where it lies, or anywhere if its
  place is unknown; a carried object is wherever its carrier is.
* tasks 11: "he" / "she" refers to the subject of the previous sentence.
* task 15: a named animal fears what its species fears.
* task 16: within a story all members of a species share one colour.
* task 17: objects sit on a grid, one step apart along one axis from the
  shared object; "X is to the left of Y" means X's column is left of Y's
  (rows are ignored), "above" compares rows the same way.

Determinism: ``generate(task, n, seed, split=...)`` draws from
``random.Random("seqlab-babi:{task}:{split}:{seed}")`` (string seeds hash with
SHA-512, stable across processes and platforms), so train, valid and test
are separate streams and the same arguments always give the same stories.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from seqlab.errors import DataError

__all__ = ["Story", "TASK_NAMES", "TASKS", "SIZES", "SPLITS", "generate", "load_babi", "parse_tasks", "tokenize"]

TASK_NAMES: dict[int, str] = {
    1: "single supporting fact",
    2: "two supporting facts",
    3: "three supporting facts",
    6: "yes/no questions",
    7: "counting",
    8: "lists/sets",
    11: "basic coreference",
    15: "basic deduction",
    16: "basic induction",
    17: "positional reasoning",
}
"""The bAbI task numbers (Weston et al. 2015, Table 1) this simulator writes, with their names."""

TASKS: tuple[int, ...] = tuple(sorted(TASK_NAMES))
SIZES: dict[str, int] = {"1k": 1000, "10k": 10000}
"""bAbI's two training sizes: questions per task."""
SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class Story:
    """One question with the statements it is asked about.

    ``support`` holds 0-based indices into ``sentences`` of the statements
    the answer follows from (bAbI's supporting facts).
    """

    task: int
    sentences: tuple[str, ...]
    question: str
    answer: str
    support: tuple[int, ...]


_TOKEN = re.compile(r"[a-z0-9,]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased words without punctuation: ``"Where is Mary?" -> ["where", "is", "mary"]``."""
    return _TOKEN.findall(text.lower())


# --------------------------------------------------------------------------
# vocabulary of the world
# --------------------------------------------------------------------------

PEOPLE = ("Mary", "John", "Sandra", "Daniel")
PRONOUN = {"Mary": "she", "Sandra": "she", "John": "he", "Daniel": "he"}
LOCATIONS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("apple", "football", "milk")
NUMBERS = ("none", "one", "two", "three")

_MOVE = ("went to", "journeyed to", "travelled to", "moved to", "went back to")
_GRAB = ("picked up", "got", "grabbed", "took")
_DROP = ("dropped", "put down", "discarded", "left")
_THEN = ("Then", "Afterwards", "Following that")

# task 15: species (singular, plural) and names
_SPECIES_15 = (("mouse", "mice"), ("sheep", "sheep"), ("wolf", "wolves"), ("cat", "cats"))
_NAMES_15 = ("Gertrude", "Winona", "Jessica", "Emily")
# task 16
_SPECIES_16 = ("swan", "lion", "frog", "rhino")
_COLORS_16 = ("white", "gray", "yellow", "green")
_NAMES_16 = ("Lily", "Bernhard", "Greg", "Julius", "Brian")
# task 17: relation -> unit step (column, row) from the object of the relation to its subject
_SHAPES_17 = ("red square", "blue square", "red sphere", "pink rectangle", "triangle", "yellow square")
_RELATIONS_17 = {"to the left of": (-1, 0), "to the right of": (1, 0), "above": (0, 1), "below": (0, -1)}
_INVERSE_17 = {"to the left of": "to the right of", "to the right of": "to the left of",
               "above": "below", "below": "above"}


def _holds_17(relation: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether the object at ``a`` is ``relation`` the object at ``b`` (only one axis counts)."""
    dx, dy = _RELATIONS_17[relation]
    return (a[0] - b[0]) * dx > 0 if dx else (a[1] - b[1]) * dy > 0


# --------------------------------------------------------------------------
# the world of people, places and objects (tasks 1, 2, 3, 6, 7, 8)
# --------------------------------------------------------------------------


@dataclass
class _World:
    """People moving between locations and carrying objects; every statement gets an index."""

    rng: random.Random
    sentences: list[str] = field(default_factory=list)
    where: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(PEOPLE))
    moved_at: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(PEOPLE))
    holder: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(OBJECTS))
    # object -> (location or None, statements that place it there)
    place: dict[str, tuple[str | None, frozenset[int]]] = field(
        default_factory=lambda: {o: (None, frozenset()) for o in OBJECTS}
    )
    # object -> distinct successive known locations, each with the statements that put it there
    history: dict[str, list[tuple[str, frozenset[int]]]] = field(default_factory=lambda: {o: [] for o in OBJECTS})
    # object -> (person, statement) of its last pick-up or drop
    touched: dict[str, tuple[str, int] | None] = field(default_factory=lambda: dict.fromkeys(OBJECTS))
    grabbed_at: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(OBJECTS))

    def _say(self, text: str) -> int:
        self.sentences.append(text)
        return len(self.sentences) - 1

    def _locate(self, obj: str, location: str | None, facts: frozenset[int]) -> None:
        self.place[obj] = (location, facts)
        hist = self.history[obj]
        if location is not None and (not hist or hist[-1][0] != location):
            hist.append((location, facts))

    def move(self, person: str, location: str) -> None:
        i = self._say(f"{person} {self.rng.choice(_MOVE)} the {location}.")
        self.where[person], self.moved_at[person] = location, i
        for obj, who in self.holder.items():
            if who == person:
                self._locate(obj, location, frozenset((self.grabbed_at[obj], i)))

    def grab(self, person: str, obj: str) -> None:
        i = self._say(f"{person} {self.rng.choice(_GRAB)} the {obj}.")
        self.holder[obj], self.grabbed_at[obj], self.touched[obj] = person, i, (person, i)
        if self.where[person] is not None:
            self._locate(obj, self.where[person], frozenset((self.moved_at[person], i)))

    def drop(self, person: str, obj: str) -> None:
        i = self._say(f"{person} {self.rng.choice(_DROP)} the {obj}.")
        self.holder[obj], self.touched[obj] = None, (person, i)
        location = self.where[person]
        facts = frozenset((self.moved_at[person], i)) if location is not None else frozenset()
        self._locate(obj, location, facts)

    # ---- random actions

    def can_grab(self, person: str, obj: str) -> bool:
        lies = self.place[obj][0]
        return self.holder[obj] is None and (lies is None or lies == self.where[person])

    def random_move(self, people: Iterable[str] = PEOPLE) -> None:
        person = self.rng.choice(tuple(people))
        self.move(person, self.rng.choice([loc for loc in LOCATIONS if loc != self.where[person]]))

    def random_action(self, p_move: float, p_grab: float) -> None:
        """A move with probability ``p_move``, else a pick-up (share ``p_grab``) or a drop, when possible."""
        u = self.rng.random()
        if u >= p_move:
            grabs = [(p, o) for p in PEOPLE for o in OBJECTS if self.can_grab(p, o)]
            drops = [(who, o) for o, who in self.holder.items() if who is not None]
            prefer_grab = u < p_move + p_grab
            options = (grabs or drops) if prefer_grab else (drops or grabs)
            if options:
                person, obj = self.rng.choice(options)
                (self.grab if self.holder[obj] is None else self.drop)(person, obj)
                return
        self.random_move()

    def carrying(self, person: str) -> list[str]:
        return sorted(o for o, who in self.holder.items() if who == person)

    def handling_facts(self, person: str) -> tuple[int, ...]:
        """The last pick-up or drop of every object whose last handler is ``person``."""
        return tuple(sorted(t[1] for t in self.touched.values() if t is not None and t[0] == person))

    def story(self, task: int, question: str, answer: str, support: Iterable[int]) -> Story:
        return Story(task, tuple(self.sentences), question, answer, tuple(sorted(set(support))))


def _ask_until(world: _World, act: Callable[[], None], ask: Callable[[], Story | None], steps: int) -> Story:
    """Take ``steps`` actions, then keep acting until ``ask`` finds an answerable question."""
    for _ in range(steps):
        act()
    for _ in range(200):
        story = ask()
        if story is not None:
            return story
        act()
    raise RuntimeError("the simulator found no answerable question in 200 steps")  # pragma: no cover


def _task_1(rng: random.Random) -> list[Story]:
    world = _World(rng)

    def ask() -> Story | None:
        known = [p for p in PEOPLE if world.where[p] is not None]
        if not known:
            return None
        person = rng.choice(known)
        return world.story(1, f"Where is {person}?", world.where[person], [world.moved_at[person]])

    return [_ask_until(world, world.random_move, ask, 2) for _ in range(5)]


def _task_6(rng: random.Random) -> list[Story]:
    world = _World(rng)

    def ask() -> Story | None:
        known = [p for p in PEOPLE if world.where[p] is not None]
        if not known:
            return None
        person = rng.choice(known)
        truth = world.where[person]
        asked = truth if rng.random() < 0.5 else rng.choice([loc for loc in LOCATIONS if loc != truth])
        answer = "yes" if asked == truth else "no"
        return world.story(6, f"Is {person} in the {asked}?", answer, [world.moved_at[person]])

    # Pick-ups and drops appear as distractors, as in bAbI's task 6.
    return [_ask_until(world, lambda: world.random_action(0.75, 0.6), ask, 2) for _ in range(5)]


def _task_2(rng: random.Random) -> list[Story]:
    world = _World(rng)

    def ask() -> Story | None:
        # Ask about objects that have been handled and whose place is known.
        known = [o for o in OBJECTS if world.place[o][0] is not None and world.touched[o] is not None]
        if not known:
            return None
        obj = rng.choice(known)
        location, facts = world.place[obj]
        return world.story(2, f"Where is the {obj}?", location, facts)

    return [_ask_until(world, lambda: world.random_action(0.5, 0.6), ask, rng.randint(2, 4)) for _ in range(5)]


def _task_3(rng: random.Random) -> list[Story]:
    world = _World(rng)

    def ask() -> Story | None:
        options = []
        for obj, hist in world.history.items():
            places = [loc for loc, _ in hist]
            options += [(obj, k) for k in range(1, len(hist)) if places.count(places[k]) == 1]
        if not options:
            return None
        obj, k = rng.choice(options)
        (before, facts_before), (after, facts_after) = world.history[obj][k - 1], world.history[obj][k]
        return world.story(3, f"Where was the {obj} before the {after}?", before, facts_before | facts_after)

    return [_ask_until(world, lambda: world.random_action(0.55, 0.7), ask, rng.randint(3, 6)) for _ in range(4)]


def _task_7_8(task: int, rng: random.Random) -> list[Story]:
    world = _World(rng)

    def ask() -> Story | None:
        handlers = sorted({t[0] for t in world.touched.values() if t is not None})
        if not handlers:
            return None
        person = rng.choice(handlers)
        held = world.carrying(person)
        if task == 7:
            question, answer = f"How many objects is {person} carrying?", NUMBERS[len(held)]
        else:
            question, answer = f"What is {person} carrying?", ",".join(held) or "nothing"
        return world.story(task, question, answer, world.handling_facts(person))

    act = lambda: world.random_action(0.35, 0.6)  # noqa: E731 - mostly pick-ups and drops
    return [_ask_until(world, act, ask, rng.randint(2, 4)) for _ in range(5)]


def _task_11(rng: random.Random) -> list[Story]:
    """Pairs of statements; the second may continue the first's subject with "he" / "she"."""
    sentences: list[str] = []
    where: dict[str, tuple[str, tuple[int, ...]]] = {}
    stories = []
    for _ in range(5):
        person = rng.choice(PEOPLE)
        location = rng.choice([loc for loc in LOCATIONS if loc != where.get(person, ("",))[0]])
        sentences.append(f"{person} {rng.choice(_MOVE)} the {location}.")
        where[person] = (location, (len(sentences) - 1,))
        if rng.random() < 0.5:
            location = rng.choice([loc for loc in LOCATIONS if loc != location])
            sentences.append(f"{rng.choice(_THEN)} {PRONOUN[person]} {rng.choice(_MOVE)} the {location}.")
            where[person] = (location, (len(sentences) - 2, len(sentences) - 1))
        else:
            other = rng.choice([p for p in PEOPLE if p != person])
            location = rng.choice([loc for loc in LOCATIONS if loc != where.get(other, ("",))[0]])
            sentences.append(f"{other} {rng.choice(_MOVE)} the {location}.")
            where[other] = (location, (len(sentences) - 1,))
        asked = rng.choice(sorted(where))
        stories.append(Story(11, tuple(sentences), f"Where is {asked}?", where[asked][0], where[asked][1]))
    return stories


def _task_15(rng: random.Random) -> list[Story]:
    """Four "Xs are afraid of Ys." rules, then four "N is a X." memberships, then questions."""
    species = list(_SPECIES_15)
    fears = {s: rng.choice([t for t in species if t != s]) for s in species}
    rules = [f"{s[1].capitalize()} are afraid of {fears[s][1]}." for s in species]
    rng.shuffle(rules)
    rule_of = {s: rules.index(f"{s[1].capitalize()} are afraid of {fears[s][1]}.") for s in species}
    names = list(_NAMES_15)
    rng.shuffle(names)
    kind = {name: rng.choice(species) for name in names}
    sentences = rules + [f"{name} is a {kind[name][0]}." for name in names]
    asked = rng.sample(names, 3)
    return [
        Story(15, tuple(sentences), f"What is {name} afraid of?", fears[kind[name]][1],
              tuple(sorted((len(rules) + names.index(name), rule_of[kind[name]]))))
        for name in asked
    ]


def _task_16(rng: random.Random) -> list[Story]:
    """Five animals, their species, and the colours of four; asked for the fifth's colour."""
    names = list(_NAMES_16)
    rng.shuffle(names)
    asked, others = names[0], names[1:]
    kind = {name: rng.choice(_SPECIES_16) for name in others}
    kind[asked] = rng.choice(sorted(set(kind.values())))  # at least one other member to induce from
    color = {s: rng.choice(_COLORS_16) for s in _SPECIES_16}
    facts = [(name, f"{name} is a {kind[name]}.") for name in names]
    facts += [(name, f"{name} is {color[kind[name]]}.") for name in others]
    # Shuffle, but keep each animal's species before its colour, as in bAbI's stories.
    order = facts[:]
    rng.shuffle(order)
    seen: set[str] = set()
    sentences: list[str] = []
    pending: dict[str, str] = {}
    for name, text in order:
        if " is a " in text:
            sentences.append(text)
            seen.add(name)
            if name in pending:
                sentences.append(pending.pop(name))
        elif name in seen:
            sentences.append(text)
        else:
            pending[name] = text
    # The evidence: the last statement of a species mate's colour.
    colour_facts = [i for i, s in enumerate(sentences) for n in others
                    if kind[n] == kind[asked] and s == f"{n} is {color[kind[n]]}."]
    evidence = max(colour_facts)
    mate = sentences[evidence].split()[0]
    support = (sentences.index(f"{asked} is a {kind[asked]}."), sentences.index(f"{mate} is a {kind[mate]}."),
               evidence)
    return [Story(16, tuple(sentences), f"What color is {asked}?", color[kind[asked]], tuple(sorted(support)))]


def _task_17(rng: random.Random) -> list[Story]:
    """Two statements about three objects on a grid, then eight yes/no questions."""
    a, hub, c = rng.sample(_SHAPES_17, 3)
    rel_a, rel_c = rng.sample(sorted(_RELATIONS_17), 2)  # different steps: a and c never coincide
    pos = {hub: (0, 0), a: _RELATIONS_17[rel_a], c: _RELATIONS_17[rel_c]}
    sentences = []
    for obj, rel in ((a, rel_a), (c, rel_c)):
        if rng.random() < 0.5:
            sentences.append(f"The {obj} is {rel} the {hub}.")
        else:
            sentences.append(f"The {hub} is {_INVERSE_17[rel]} the {obj}.")
    fact_of = {a: 0, c: 1}
    stories = []
    for _ in range(8):
        # Two thirds of the questions need both statements (a vs c), the rest one.
        x, y = rng.choice([(a, c), (c, a)]) if rng.random() < 2 / 3 else rng.choice(
            [(a, hub), (hub, a), (c, hub), (hub, c)])
        want_yes = rng.random() < 0.5
        candidates = [r for r in sorted(_RELATIONS_17) if _holds_17(r, pos[x], pos[y]) == want_yes]
        relation = rng.choice(candidates)
        support = sorted({fact_of[o] for o in (x, y) if o != hub})
        stories.append(Story(17, tuple(sentences), f"Is the {x} {relation} the {y}?",
                             "yes" if want_yes else "no", tuple(support)))
    return stories


_EPISODES: dict[int, Callable[[random.Random], list[Story]]] = {
    1: _task_1,
    2: _task_2,
    3: _task_3,
    6: _task_6,
    7: lambda rng: _task_7_8(7, rng),
    8: lambda rng: _task_7_8(8, rng),
    11: _task_11,
    15: _task_15,
    16: _task_16,
    17: _task_17,
}


# --------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------


def generate(task: int, n: int, seed: int, *, split: str = "train") -> list[Story]:
    """``n`` questions of bAbI-style ``task`` (with their stories) from the ``split`` stream of ``seed``.

    Raises:
        DataError: an unknown task or split, or a negative ``n``.
    """
    if task not in _EPISODES:
        raise DataError(f"bAbI-style task {task} is not simulated", hint=f"valid tasks: {', '.join(map(str, TASKS))}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}", hint=f"valid splits: {', '.join(SPLITS)}")
    if n < 0:
        raise DataError(f"number of questions must be >= 0, got {n}")
    rng = random.Random(f"seqlab-babi:{task}:{split}:{seed}")
    out: list[Story] = []
    while len(out) < n:
        out.extend(_EPISODES[task](rng))
    return out[:n]


def parse_tasks(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` or ``"all"`` -> task numbers, checked against :data:`TASKS`."""
    if text.strip() == "all":
        return TASKS
    try:
        tasks = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise DataError(f"tasks must be comma-separated numbers or 'all', got {text!r}") from None
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if not tasks or unknown or len(set(tasks)) != len(tasks):
        raise DataError(f"invalid task list {text!r}", hint=f"give distinct tasks from {', '.join(map(str, TASKS))}")
    return tasks


def load_babi(
    tasks: Iterable[int], train_size: int, seed: int, *, valid_size: int | None = None, test_size: int = 1000
) -> dict[str, list[Story]]:
    """Train / valid / test questions of every task in ``tasks``, each split from its own stream.

    ``train_size`` and ``test_size`` count questions per task (bAbI: 1,000 or
    10,000 to train, 1,000 to test); ``valid_size`` defaults to a tenth of
    ``train_size``, the share bAbI work holds out for validation.
    """
    sizes = {"train": train_size, "valid": train_size // 10 if valid_size is None else valid_size,
             "test": test_size}
    return {split: [s for t in tasks for s in generate(t, n, seed, split=split)] for split, n in sizes.items()}
