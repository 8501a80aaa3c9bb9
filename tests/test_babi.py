"""The bAbI-style simulator: determinism, hand-checked worlds, and an independent replay of every story.

The replay (:func:`_answer`) reads the generated English back with its own
regular expressions, rebuilds the world from the text alone and answers the
question.  Every generated answer must match it, both from the whole story
and from the supporting facts alone, which checks that ``support`` names
statements that really determine the answer.
"""

import random
import re

import pytest

from seqlab.data import babi
from seqlab.data.babi import TASKS, Story, generate, load_babi, parse_tasks, tokenize
from seqlab.errors import DataError

# --------------------------------------------------------------------------
# an independent reader of the generated text
# --------------------------------------------------------------------------

_MOVE = re.compile(r"^(?:(?:Then|Afterwards|Following that) )?(\w+) (?:went to|journeyed to|travelled to|moved to|"
                   r"went back to) the (\w+)\.$")
_GRAB = re.compile(r"^(\w+) (?:picked up|got|grabbed|took) the (\w+)\.$")
_DROP = re.compile(r"^(\w+) (?:dropped|put down|discarded|left) the (\w+)\.$")
_GENDER = {"he": ("John", "Daniel"), "she": ("Mary", "Sandra")}
_NUMBER_WORDS = ["none", "one", "two", "three"]
_STEPS = {"to the left of": (-1, 0), "to the right of": (1, 0), "above": (0, 1), "below": (0, -1)}
_PLURAL = {"mouse": "mice", "sheep": "sheep", "wolf": "wolves", "cat": "cats"}


def _replay_world(sentences):
    """Locations of people, holders of objects, and each object's successive locations."""
    where, holder, lies, history = {}, {}, {}, {}
    previous_subject = None

    def place(obj, loc):
        lies[obj] = loc
        if loc is not None and (not history.get(obj) or history[obj][-1] != loc):
            history.setdefault(obj, []).append(loc)

    for text in sentences:
        if m := _MOVE.match(text):
            who, loc = m.groups()
            if who in ("he", "she"):
                assert previous_subject in _GENDER[who], f"{who!r} cannot refer to {previous_subject}"
                who = previous_subject
            where[who] = loc
            for obj, h in holder.items():
                if h == who:
                    place(obj, loc)
        elif m := _GRAB.match(text):
            who, obj = m.groups()
            holder[obj] = who
            if who in where:
                place(obj, where[who])
        elif m := _DROP.match(text):
            who, obj = m.groups()
            holder[obj] = None
            place(obj, where.get(who))
        else:
            raise AssertionError(f"unreadable statement {text!r}")
        previous_subject = who
    return where, holder, lies, history


def _answer(task, sentences, question):
    if task in (1, 2, 3, 6, 7, 8, 11):
        where, holder, lies, history = _replay_world(sentences)
        if m := re.fullmatch(r"Where is (\w+)\?", question):
            return where.get(m[1])
        if m := re.fullmatch(r"Where is the (\w+)\?", question):
            return lies.get(m[1])
        if m := re.fullmatch(r"Where was the (\w+) before the (\w+)\?", question):
            places = history[m[1]]
            assert places.count(m[2]) == 1 and places.index(m[2]) >= 1, (places, question)
            return places[places.index(m[2]) - 1]
        if m := re.fullmatch(r"Is (\w+) in the (\w+)\?", question):
            return "yes" if where.get(m[1]) == m[2] else "no"
        if m := re.fullmatch(r"How many objects is (\w+) carrying\?", question):
            return _NUMBER_WORDS[sum(h == m[1] for h in holder.values())]
        if m := re.fullmatch(r"What is (\w+) carrying\?", question):
            return ",".join(sorted(o for o, h in holder.items() if h == m[1])) or "nothing"
    if task == 15:
        fears = {m[1].lower(): m[2] for s in sentences if (m := re.fullmatch(r"(\w+) are afraid of (\w+)\.", s))}
        kinds = {m[1]: m[2] for s in sentences if (m := re.fullmatch(r"(\w+) is a (\w+)\.", s))}
        name = re.fullmatch(r"What is (\w+) afraid of\?", question)[1]
        return fears.get(_PLURAL[kinds[name]]) if name in kinds else None
    if task == 16:
        kinds = {m[1]: m[2] for s in sentences if (m := re.fullmatch(r"(\w+) is a (\w+)\.", s))}
        colors = {m[1]: m[2] for s in sentences if (m := re.fullmatch(r"(\w+) is (\w+)\.", s)) and m[2] != "a"}
        name = re.fullmatch(r"What color is (\w+)\?", question)[1]
        seen = {colors[n] for n in colors if n != name and kinds.get(n) == kinds.get(name)}
        assert len(seen) <= 1, f"species with two colours in {sentences}"
        return seen.pop() if seen else None
    if task == 17:
        pos = {}
        for s in sentences:
            x, rel, y = re.fullmatch(r"The (.+) is (to the left of|to the right of|above|below) the (.+)\.", s).groups()
            dx, dy = _STEPS[rel]
            if y in pos:
                pos[x] = (pos[y][0] + dx, pos[y][1] + dy)
            elif x in pos:
                pos[y] = (pos[x][0] - dx, pos[x][1] - dy)
            else:
                pos[y], pos[x] = (0, 0), (dx, dy)
        x, rel, y = re.fullmatch(r"Is the (.+) (to the left of|to the right of|above|below) the (.+)\?", question).groups()
        if x not in pos or y not in pos:
            return None
        dx, dy = _STEPS[rel]
        return "yes" if (pos[x][0] - pos[y][0]) * dx + (pos[x][1] - pos[y][1]) * dy > 0 else "no"
    raise AssertionError(f"no reader for task {task}")


# --------------------------------------------------------------------------
# the reader itself, on stories written by hand
# --------------------------------------------------------------------------


@pytest.mark.parametrize("task, sentences, question, answer", [
    (1, ["Mary went to the bathroom.", "John moved to the hallway.", "Mary travelled to the office."],
     "Where is Mary?", "office"),
    (2, ["John went to the kitchen.", "John picked up the football.", "Mary went to the garden.",
         "John went back to the office."], "Where is the football?", "office"),
    (3, ["John picked up the apple.", "John went to the office.", "John went to the kitchen.",
         "John dropped the apple."], "Where was the apple before the kitchen?", "office"),
    (6, ["John went to the garden.", "John went back to the hallway."], "Is John in the garden?", "no"),
    (7, ["Daniel picked up the football.", "Daniel dropped the football.", "Daniel got the milk.",
         "Daniel took the apple."], "How many objects is Daniel carrying?", "two"),
    (8, ["Daniel picked up the football.", "Daniel got the milk.", "John took the apple."],
     "What is Daniel carrying?", "football,milk"),
    (11, ["Daniel went to the kitchen.", "Then he went to the office.", "Sandra went to the garden."],
     "Where is Daniel?", "office"),
    (15, ["Sheep are afraid of wolves.", "Cats are afraid of sheep.", "Gertrude is a sheep."],
     "What is Gertrude afraid of?", "wolves"),
    (16, ["Lily is a swan.", "Lily is white.", "Bernhard is green.", "Greg is a swan."], "What color is Greg?",
     "white"),
    (17, ["The triangle is to the right of the blue square.", "The red square is above the blue square."],
     "Is the red square to the left of the triangle?", "yes"),
])  # fmt: skip
def test_reader_on_hand_written_stories(task, sentences, question, answer):
    assert _answer(task, sentences, question) == answer


# --------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_every_generated_answer_follows_from_the_story_and_from_its_supporting_facts(task):
    stories = generate(task, 400, seed=3)
    assert len(stories) == 400
    for story in stories:
        assert story.task == task
        assert story.support and all(0 <= i < len(story.sentences) for i in story.support), story
        assert list(story.support) == sorted(set(story.support))
        assert _answer(task, story.sentences, story.question) == story.answer, story
        facts = [story.sentences[i] for i in story.support]
        assert _answer(task, facts, story.question) == story.answer, story


@pytest.mark.parametrize("task", TASKS)
def test_generation_is_deterministic_for_a_seed_and_split(task):
    first = generate(task, 60, seed=11)
    assert first == generate(task, 60, seed=11)
    assert first[:20] == generate(task, 20, seed=11)  # a prefix of the same stream
    assert first != generate(task, 60, seed=12)
    assert first != generate(task, 60, seed=11, split="test")


def test_answers_cover_the_expected_vocabulary():
    answers = {t: {s.answer for s in generate(t, 1000, seed=0)} for t in TASKS}
    for t in (1, 2, 3, 11):
        assert answers[t] == set(babi.LOCATIONS)
    assert answers[6] == answers[17] == {"yes", "no"}
    assert answers[7] == {"none", "one", "two", "three"}
    assert "nothing" in answers[8] and "apple,football,milk" in answers[8] and len(answers[8]) == 8
    assert answers[15] == {"mice", "sheep", "wolves", "cats"}
    assert answers[16] == set(babi._COLORS_16)
    assert all(tokenize(a) == [a] for t in TASKS for a in answers[t])  # one token each, task 8 included


def test_load_babi_sizes_and_separate_streams():
    data = load_babi([1, 15], 200, seed=5, test_size=30)
    assert [len(data[s]) for s in ("train", "valid", "test")] == [400, 40, 60]
    assert data["train"][:200] == generate(1, 200, 5)
    assert data["test"][:30] == generate(1, 30, 5, split="test")
    assert data["valid"][:20] == generate(1, 20, 5, split="valid")
    assert load_babi([2], 50, seed=5, valid_size=7)["valid"] == generate(2, 7, 5, split="valid")
    assert babi.SIZES == {"1k": 1000, "10k": 10000}


def test_story_lengths_stay_within_the_cpu_budget():
    longest = {t: max(len(s.sentences) for s in generate(t, 2000, seed=1)) for t in TASKS}
    assert longest[17] == 2 and longest[15] == 8 and longest[16] == 9
    assert longest[1] == 10 and longest[11] == 10
    assert max(longest.values()) <= 80


def test_tokenize_and_parse_tasks():
    assert tokenize("Where is the apple,football?") == ["where", "is", "the", "apple,football"]
    assert tokenize("Then she went back to the office.") == ["then", "she", "went", "back", "to", "the", "office"]
    assert parse_tasks("1, 3,17") == (1, 3, 17)
    assert parse_tasks("all") == TASKS
    for bad in ("1,1", "4", "x", ""):
        with pytest.raises(DataError):
            parse_tasks(bad)


@pytest.mark.parametrize("call", [lambda: generate(4, 1, 0), lambda: generate(1, 1, 0, split="dev"),
                                  lambda: generate(1, -1, 0)])
def test_bad_arguments_raise_data_errors(call):
    with pytest.raises(DataError):
        call()


# --------------------------------------------------------------------------
# the world's rules, checked on hand-made worlds
# --------------------------------------------------------------------------


def _world():
    return babi._World(random.Random(0))


def test_carried_objects_follow_their_carrier_and_stay_where_dropped():
    w = _world()
    w.move("John", "kitchen")  # 0
    w.grab("John", "football")  # 1
    assert w.place["football"] == ("kitchen", frozenset({0, 1}))
    w.move("Mary", "garden")  # 2
    w.move("John", "office")  # 3
    assert w.place["football"] == ("office", frozenset({1, 3}))
    w.drop("John", "football")  # 4
    w.move("John", "bedroom")  # 5
    assert w.place["football"] == ("office", frozenset({3, 4}))
    assert [loc for loc, _ in w.history["football"]] == ["kitchen", "office"]
    assert not w.can_grab("Mary", "football")  # it lies in the office, Mary is in the garden
    w.move("Mary", "office")  # 6
    assert w.can_grab("Mary", "football")


def test_objects_picked_up_nowhere_known_are_located_by_the_carriers_next_move():
    w = _world()
    w.grab("Sandra", "apple")  # 0: Sandra's place is unknown, so the apple's is
    assert w.place["apple"] == (None, frozenset())
    w.move("Sandra", "hallway")  # 1
    w.move("Sandra", "garden")  # 2
    w.move("Sandra", "hallway")  # 3
    assert [loc for loc, _ in w.history["apple"]] == ["hallway", "garden", "hallway"]
    assert w.history["apple"][1] == ("garden", frozenset({0, 2}))


def test_counting_and_lists_from_pick_ups_and_drops():
    w = _world()
    w.grab("Daniel", "football")  # 0
    w.drop("Daniel", "football")  # 1
    w.grab("Daniel", "milk")  # 2
    w.grab("Daniel", "apple")  # 3
    w.grab("John", "football")  # 4
    assert w.carrying("Daniel") == ["apple", "milk"]
    assert w.handling_facts("Daniel") == (2, 3)  # the football's last handler is now John
    assert w.carrying("John") == ["football"] and w.handling_facts("John") == (4,)
    w.drop("John", "football")  # 5
    assert w.carrying("John") == [] and w.handling_facts("John") == (5,)


def test_positional_relations_compare_one_axis():
    left, right, up = (-1, 0), (1, 0), (0, 1)
    assert babi._holds_17("to the left of", left, right)
    assert babi._holds_17("to the left of", left, up)  # columns -1 < 0, rows ignored
    assert babi._holds_17("below", left, up)
    assert not babi._holds_17("above", left, right)  # same row
    assert not babi._holds_17("to the right of", left, left)


def test_story_is_a_frozen_record():
    story = generate(1, 1, 0)[0]
    assert isinstance(story, Story)
    with pytest.raises(AttributeError):
        story.answer = "x"
