"""The character set of the text a PACS returns: what it declares, and what the bytes are.

A C-FIND answer's names and descriptions are bytes in the character set its
Specific Character Set (0008,0005) names; many PACS leave it out, or name the
wrong one, and send Latin-1 or GBK anyway. The raw bytes of the text elements
(before pydicom decodes them) and the strict check of whether they decode in the
declared set are ``charsets``'s, as for the C-FIND repair; this module counts
them and, when they do not decode, guesses which set reads them best.

"Best" is a heuristic, not a proof: each candidate that decodes every value
without error is scored by how unlike text the result looks (symbols where
letters are expected, a Chinese character glued to a Latin letter), and the
lowest score wins. UTF-8 comes first: other text is almost never valid UTF-8.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicomweb_gw.pacs.charsets import beyond_ascii, declared_charset, decodes_in, raw_texts

__all__ = ["CANDIDATES", "CharsetVerdict", "judge_charset"]

#: (defined term, Python codec), in order of preference on a tie.
CANDIDATES: tuple[tuple[str, str], ...] = (
    ("ISO_IR 192", "utf_8"),
    ("ISO_IR 100", "latin_1"),
    ("GB18030", "gb18030"),
)


@dataclass(frozen=True)
class CharsetVerdict:
    #: The declared (0008,0005) terms; empty when no answer carried one.
    declared: tuple[str, ...]
    #: Text values seen, and those with bytes outside ASCII.
    values: int
    non_ascii: int
    #: Every non-ASCII value decodes in the declared set (ASCII when none is declared).
    decodes: bool
    #: The defined term that reads the values best, when they do not decode as declared.
    guess: str | None


def judge_charset(answers: Iterable[Dataset]) -> CharsetVerdict:
    declared: tuple[str, ...] = ()
    values: list[bytes] = []
    for answer in answers:
        declared = declared or declared_charset(answer)
        values += raw_texts(answer)
    foreign = [value for value in values if beyond_ascii(value)]
    decodes = all(decodes_in(value, declared) for value in foreign)
    guess = None if decodes or not foreign else _best_guess(foreign)
    return CharsetVerdict(declared=declared, values=len(values), non_ascii=len(foreign),
                          decodes=decodes, guess=guess)


def _best_guess(values: Sequence[bytes]) -> str | None:
    scored: list[tuple[int, int, int, str]] = []
    for rank, (term, codec) in enumerate(CANDIDATES):
        try:
            decoded = [value.decode(codec) for value in values]
        except UnicodeDecodeError:
            continue
        penalty = sum(_oddity(text) for text in decoded)
        # On a tie, the reading with fewer characters (bytes taken in pairs) wins.
        scored.append((penalty, sum(len(text) for text in decoded), rank, term))
    return min(scored)[3] if scored else None


def _oddity(text: str) -> int:
    """How unlike a name or description ``text`` looks: one point per odd character."""
    score = 0
    for index, char in enumerate(text):
        if ord(char) < 0x80:
            continue
        category = unicodedata.category(char)
        if not category.startswith("L"):
            score += 1  # a symbol, control or mark where a letter belongs
        elif _is_cjk(char) and _next_to_latin(text, index):
            score += 1  # a Chinese character glued to a Latin letter: bytes misread
    return score


def _is_cjk(char: str) -> bool:
    return 0x2E80 <= ord(char) <= 0x9FFF or 0xF900 <= ord(char) <= 0xFAFF or ord(char) > 0xFFFF


def _next_to_latin(text: str, index: int) -> bool:
    neighbours = text[max(0, index - 1):index] + text[index + 1:index + 2]
    return any(char.isascii() and char.isalpha() for char in neighbours)
