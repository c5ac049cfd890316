"""Write ``routing-suite.jsonl``: labelled prompts over a range of difficulty, to tell small models apart.

The suite is generated, deterministic and seeded: the same seed writes the same
file byte for byte. Five task types, each from easy to hard:

``arithmetic``
    Addition, subtraction and multiplication with operands of growing size
    (one digit up to four digits; products up to two by two digits).
``factual``
    Capitals, chemical symbols, authors, animals, planets and other school facts,
    from the hand-written table :data:`FACTS` below.
``conversion``
    Unit conversions (metres to centimetres, hours to minutes, ...) with growing
    quantities.
``letters``
    First and last letters of a word (easy), length of a word and occurrences of
    a letter (hard for sub-word tokenisers).
``instruction``
    Short instructions with one checkable answer: repeat a word, upper-case it,
    opposites, plurals, the next number of a sequence.

Each line: ``id`` (``<task>-<kind>-<n>``), ``prompt``, ``answer`` (list of
accepted answers), ``match`` (``contains`` or ``exact``, see
``langchain_energyrouter.calibration.accuracy``), ``task_type``.

Usage::

    python calibration/suites/make_routing_suite.py [--seed 0] [--out calibration/suites/routing-suite.jsonl]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DEFAULT_OUT = Path(__file__).with_name("routing-suite.jsonl")

NUMBER_ONLY = "Reply with the number only."
ONE_WORD = "Answer with one word."

# (question, accepted answers). Written by hand; every answer is a plain, uncontested fact.
FACTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What is the capital of Italy?", ("Rome",)),
    ("What is the capital of Germany?", ("Berlin",)),
    ("What is the capital of Spain?", ("Madrid",)),
    ("What is the capital of Egypt?", ("Cairo",)),
    ("What is the capital of Russia?", ("Moscow",)),
    ("What is the capital of China?", ("Beijing",)),
    ("What is the capital of Canada?", ("Ottawa",)),
    ("What is the capital of Australia?", ("Canberra",)),
    ("What is the capital of Brazil?", ("Brasilia", "Brasília")),
    ("What is the capital of Kenya?", ("Nairobi",)),
    ("What is the capital of Norway?", ("Oslo",)),
    ("What is the capital of Sweden?", ("Stockholm",)),
    ("What is the capital of Greece?", ("Athens",)),
    ("What is the capital of Portugal?", ("Lisbon",)),
    ("What is the capital of Poland?", ("Warsaw",)),
    ("What is the capital of Argentina?", ("Buenos Aires",)),
    ("What is the capital of Peru?", ("Lima",)),
    ("What is the capital of Turkey?", ("Ankara",)),
    ("What is the capital of India?", ("New Delhi", "Delhi")),
    ("What is the capital of South Korea?", ("Seoul",)),
    ("What is the capital of Thailand?", ("Bangkok",)),
    ("What is the capital of Ireland?", ("Dublin",)),
    ("What is the capital of Austria?", ("Vienna",)),
    ("What is the capital of Hungary?", ("Budapest",)),
    ("What is the capital of Finland?", ("Helsinki",)),
    ("What is the capital of Mexico?", ("Mexico City",)),
    ("What is the capital of Vietnam?", ("Hanoi",)),
    ("What is the capital of Nigeria?", ("Abuja",)),
    ("What is the chemical symbol for gold?", ("Au",)),
    ("What is the chemical symbol for silver?", ("Ag",)),
    ("What is the chemical symbol for iron?", ("Fe",)),
    ("What is the chemical symbol for sodium?", ("Na",)),
    ("What is the chemical symbol for oxygen?", ("O",)),
    ("What is the chemical symbol for hydrogen?", ("H",)),
    ("What is the chemical symbol for potassium?", ("K",)),
    ("What is the chemical symbol for lead?", ("Pb",)),
    ("Which planet is known as the Red Planet?", ("Mars",)),
    ("Which planet is the largest in our solar system?", ("Jupiter",)),
    ("Which planet is closest to the Sun?", ("Mercury",)),
    ("Which planet is famous for its rings?", ("Saturn",)),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("What is the longest river in Africa?", ("Nile",)),
    ("What is the tallest mountain on Earth?", ("Everest", "Mount Everest")),
    ("What is the largest desert in Africa?", ("Sahara",)),
    ("Who wrote the play Hamlet?", ("Shakespeare",)),
    ("Who wrote the novel Pride and Prejudice?", ("Austen", "Jane Austen")),
    ("Who painted the Mona Lisa?", ("Leonardo", "da Vinci", "Leonardo da Vinci")),
    ("Who developed the theory of relativity?", ("Einstein", "Albert Einstein")),
    ("Who was the first person to walk on the Moon?", ("Armstrong", "Neil Armstrong")),
    ("Who wrote the novel 1984?", ("Orwell", "George Orwell")),
    ("What gas do plants absorb from the air to make food?", ("carbon dioxide", "CO2")),
    ("What gas do humans need to breathe to live?", ("oxygen",)),
    ("What is the freezing point of water in degrees Celsius?", ("0", "zero")),
    ("What is the boiling point of water in degrees Celsius?", ("100", "one hundred")),
    ("How many legs does a spider have?", ("8", "eight")),
    ("How many legs does an insect have?", ("6", "six")),
    ("How many continents are there on Earth?", ("7", "seven")),
    ("How many days are there in a leap year?", ("366",)),
    ("How many sides does a hexagon have?", ("6", "six")),
    ("How many sides does a triangle have?", ("3", "three")),
    ("Which animal is known as the king of the jungle?", ("lion",)),
    ("What is the largest mammal on Earth?", ("blue whale", "whale")),
    ("What is the fastest land animal?", ("cheetah",)),
    ("Which bird is a symbol of peace?", ("dove",)),
    ("What do bees make?", ("honey",)),
    ("What is the hardest natural substance?", ("diamond",)),
    ("What is the main language spoken in Brazil?", ("Portuguese",)),
    ("What is the currency of Japan?", ("yen",)),
    ("What is the currency of the United Kingdom?", ("pound", "pound sterling", "pounds")),
    ("In which country are the pyramids of Giza?", ("Egypt",)),
    ("In which city is the Eiffel Tower?", ("Paris",)),
    ("What colour do you get by mixing blue and yellow?", ("green",)),
    ("What colour do you get by mixing red and white?", ("pink",)),
    ("Which organ pumps blood through the human body?", ("heart",)),
    ("What is the closest star to the Earth?", ("Sun", "the Sun")),
    ("What is the natural satellite of the Earth called?", ("Moon", "the Moon")),
    ("What is frozen water called?", ("ice",)),
    ("Which month has the fewest days?", ("February",)),
)

# Conversions: (template, factor, unit range of the quantity, kind).
CONVERSIONS: tuple[tuple[str, int, str], ...] = (
    ("How many centimetres are in {q} metres?", 100, "m-cm"),
    ("How many millimetres are in {q} centimetres?", 10, "cm-mm"),
    ("How many metres are in {q} kilometres?", 1000, "km-m"),
    ("How many grams are in {q} kilograms?", 1000, "kg-g"),
    ("How many minutes are in {q} hours?", 60, "h-min"),
    ("How many seconds are in {q} minutes?", 60, "min-s"),
    ("How many hours are in {q} days?", 24, "d-h"),
    ("How many days are in {q} weeks?", 7, "wk-d"),
    ("How many months are in {q} years?", 12, "yr-mo"),
    ("How many millilitres are in {q} litres?", 1000, "l-ml"),
)

WORDS: tuple[str, ...] = (
    "apple", "banana", "cherry", "garden", "window", "pencil", "rabbit", "orange", "planet", "silver",
    "mountain", "river", "yellow", "strawberry", "elephant", "computer", "butterfly", "kitchen", "summer",
    "dragon", "letter", "bottle", "mirror", "pepper", "balloon", "coffee", "tomato", "giraffe", "holiday",
    "library", "jungle", "castle", "forest", "candle", "pizza", "guitar", "rocket", "turtle", "monkey",
    "island",
)  # fmt: skip

OPPOSITES: tuple[tuple[str, str], ...] = (
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"), ("fast", "slow"), ("open", "closed"),
    ("happy", "sad"), ("light", "dark"), ("early", "late"), ("wet", "dry"), ("old", "young"), ("full", "empty"),
    ("left", "right"), ("strong", "weak"), ("hard", "soft"), ("loud", "quiet"), ("rich", "poor"),
    ("tall", "short"), ("win", "lose"), ("buy", "sell"),
)  # fmt: skip

PLURALS: tuple[tuple[str, str], ...] = (
    ("mouse", "mice"), ("child", "children"), ("foot", "feet"), ("tooth", "teeth"), ("man", "men"),
    ("woman", "women"), ("goose", "geese"), ("person", "people"), ("box", "boxes"), ("city", "cities"),
    ("knife", "knives"), ("leaf", "leaves"), ("baby", "babies"), ("bus", "buses"), ("wolf", "wolves"),
)  # fmt: skip

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
                "twenty")  # fmt: skip


def _numbers(value: int) -> list[str]:
    """A number as digits, and as a word up to twenty (small models write both)."""
    out = [str(value)]
    if 0 <= value < len(NUMBER_WORDS):
        out.append(NUMBER_WORDS[value])
    if value >= 1000:
        out.append(f"{value:,}")
    return out


def _item(task: str, kind: str, n: int, prompt: str, answer: list[str], match: str = "contains") -> dict[str, object]:
    return {"id": f"{task}-{kind}-{n:03d}", "prompt": prompt, "answer": answer, "match": match, "task_type": task}


def arithmetic(rng: random.Random) -> list[dict[str, object]]:
    """Sums, differences and products of growing size: 12 of each of 7 kinds."""
    items = []
    kinds = (
        ("add1", 1, 9, "+"),
        ("add2", 10, 99, "+"),
        ("add3", 100, 999, "+"),
        ("add4", 1000, 9999, "+"),
        ("sub2", 10, 99, "-"),
        ("mul1", 2, 9, "*"),
        ("mul2", 11, 99, "*"),
    )
    for kind, lo, hi, op in kinds:
        for n in range(1, 13):
            a, b = rng.randint(lo, hi), rng.randint(lo, hi)
            if op == "-":
                a, b = max(a, b), min(a, b)
            value = a + b if op == "+" else a - b if op == "-" else a * b
            word = {"+": "+", "-": "-", "*": "times"}[op]
            items.append(_item("arithmetic", kind, n, f"What is {a} {word} {b}? {NUMBER_ONLY}", _numbers(value)))
    return items


def factual() -> list[dict[str, object]]:
    return [
        _item("factual", "fact", n, f"{question} {ONE_WORD}" if " " not in answers[0] else question, list(answers))
        for n, (question, answers) in enumerate(FACTS, start=1)
    ]


def conversion(rng: random.Random) -> list[dict[str, object]]:
    """Each conversion with a small (2-5), a medium (6-19), a larger (21-99) and a large (101-999) quantity."""
    items = []
    n = 0
    for template, factor, kind in CONVERSIONS:
        for lo, hi in ((2, 5), (6, 19), (21, 99), (101, 999)):
            n += 1
            q = rng.randint(lo, hi)
            items.append(_item("conversion", kind, n, f"{template.format(q=q)} {NUMBER_ONLY}", _numbers(q * factor)))
    return items


def letters(rng: random.Random) -> list[dict[str, object]]:
    """First letter, last letter, word length and letter counts, 10 of each."""
    items = []
    words = list(WORDS)
    for n in range(1, 11):
        word = rng.choice(words)
        items.append(
            _item("letters", "first", n, f"What is the first letter of the word '{word}'? Reply with the letter only.",
                  [word[0]], "exact")
        )  # fmt: skip
    for n in range(1, 11):
        word = rng.choice(words)
        items.append(
            _item("letters", "last", n, f"What is the last letter of the word '{word}'? Reply with the letter only.",
                  [word[-1]], "exact")
        )  # fmt: skip
    for n in range(1, 11):
        word = rng.choice(words)
        items.append(
            _item("letters", "length", n, f"How many letters are in the word '{word}'? {NUMBER_ONLY}",
                  _numbers(len(word)))
        )  # fmt: skip
    for n in range(1, 11):
        word = rng.choice(words)
        letter = rng.choice(sorted(set(word)))
        items.append(
            _item("letters", "count", n, f"How many times does the letter '{letter}' appear in '{word}'? {NUMBER_ONLY}",
                  _numbers(word.count(letter)))
        )  # fmt: skip
    return items


def instruction(rng: random.Random) -> list[dict[str, object]]:
    """Repeat, upper-case, opposite, plural, next in sequence."""
    items = []
    for n, word in enumerate(rng.sample(WORDS, 10), start=1):
        items.append(_item("instruction", "repeat", n, f"Repeat this word exactly: {word}", [word], "exact"))
    for n, word in enumerate(rng.sample(WORDS, 10), start=1):
        items.append(
            _item("instruction", "upper", n, f"Write the word '{word}' in capital letters and nothing else.",
                  [word.upper()], "exact")
        )  # fmt: skip
    for n, (word, opposite) in enumerate(OPPOSITES, start=1):
        items.append(_item("instruction", "opposite", n, f"What is the opposite of '{word}'? {ONE_WORD}", [opposite]))
    for n, (word, plural) in enumerate(PLURALS, start=1):
        items.append(_item("instruction", "plural", n, f"What is the plural of '{word}'? {ONE_WORD}", [plural]))
    for n in range(1, 11):
        start, step = rng.randint(1, 30), rng.choice((1, 2, 3, 5, 10, 11))
        seq = ", ".join(str(start + i * step) for i in range(4))
        items.append(
            _item("instruction", "sequence", n, f"Complete the sequence with the next number: {seq}, ...",
                  _numbers(start + 4 * step))
        )  # fmt: skip
    return items


def build(seed: int = 0) -> list[dict[str, object]]:
    """Every item of the suite, in a fixed order."""
    rng = random.Random(seed)
    return [*arithmetic(rng), *factual(), *conversion(rng), *letters(rng), *instruction(rng)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    items = build(args.seed)
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)), "duplicate ids"
    args.out.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item["task_type"])] = counts.get(str(item["task_type"]), 0) + 1
    print(f"wrote {len(items)} items to {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
