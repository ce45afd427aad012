"""The lay-language lexicon (`lexicon/*.yaml`): red-flag findings as patients word them.

Each finding lists lay phrasings (regular expressions) and exemplar sentences in English and
Chinese, the clinical sources it was written from, and the rule whose level and explanation it
carries on its own (`implies`). Multi-word senses ("cold sweat") keep a finding from matching
a word that means something else inside them.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

DEFAULT_LEXICON = Path(__file__).with_name("lexicon")

Patterns = dict[str, list[str]]


class LexiconFinding(BaseModel):
    """One red-flag finding in patients' words."""

    implies: str
    sources: list[str] = Field(min_length=1)
    lay: Patterns
    exemplars: dict[str, list[str]] = Field(default_factory=dict)


class Lexicon(BaseModel):
    """The whole lexicon file."""

    senses: dict[str, list[str]] = Field(default_factory=dict)
    findings: dict[str, LexiconFinding] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = DEFAULT_LEXICON) -> Lexicon:
        """Read and validate a lexicon file, or every `*.yaml` file of a folder, merged."""
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        senses: dict[str, list[str]] = {}
        findings: dict[str, LexiconFinding] = {}
        for file in files:
            part = cls.model_validate(yaml.safe_load(file.read_text(encoding="utf-8")))
            for language, phrases in part.senses.items():
                senses.setdefault(language, []).extend(phrases)
            for name, finding in part.findings.items():
                if name in findings:
                    raise ValueError(f"{file.name}: finding {name!r} is defined twice")
                findings[name] = finding
        if not findings:
            raise ValueError(f"no lexicon findings in {path}")
        return cls(senses=senses, findings=findings)


def compile_patterns(patterns: Patterns) -> re.Pattern[str]:
    """Compile per-language patterns into one regular expression over lower-cased text.

    English-like patterns anchor at a word start so "arm" does not match "warm"; Chinese has no
    spaces, so its patterns match anywhere. One anchor in front of one alternation keeps
    matching fast: mid-word positions fail at the first check.
    """
    for items in patterns.values():
        for p in items:
            if re.sub(r"\\[a-zA-Z]", "", p) != re.sub(r"\\[a-zA-Z]", "", p).lower():
                raise ValueError(f"pattern {p!r}: write patterns in lower case")
            if any(ord(ch) < 32 for ch in p):
                # YAML's double quotes turn "\b" into a backspace: the pattern never matches.
                raise ValueError(f"pattern {p!r}: a control character; use single quotes")
    worded = [p for language, items in patterns.items() if language != "zh" for p in items]
    anywhere = list(patterns.get("zh", []))
    parts = []
    if worded:
        parts.append(r"(?<![^\W_])(?:" + "|".join(f"(?:{p})" for p in worded) + ")")
    if anywhere:
        parts.append("|".join(f"(?:{p})" for p in anywhere))
    return re.compile("|".join(parts))


class Senses:
    """Multi-word expressions whose words mean something else together."""

    def __init__(self, phrases: dict[str, list[str]]) -> None:
        escaped = {
            language: [re.escape(p.lower()) for p in items] for language, items in phrases.items()
        }
        self._pattern = compile_patterns(escaped) if any(escaped.values()) else None

    def opens(self, text: str, start: int, end: int) -> bool:
        """Whether the match text[start:end] is the first word(s) of a sense.

        The words that open a multi-word expression lose their own meaning ("cold" in "cold
        sweat" is no cold); the word it ends on keeps it ("sweat" in "cold sweat" is
        sweating). Checked at each finding, so a long text costs nothing more.
        """
        if self._pattern is None:
            return False
        sense = self._pattern.match(text, start)
        return sense is not None and sense.end() > end


_MAX_KEYS = 64
# A prefix holding one (two) whole words: a word, then something that ends it.
_WHOLE_WORDS = {1: re.compile(r"[^\W_]*[\W_]"), 2: re.compile(r"[^\W_]*[\W_]+[^\W_]+[\W_]")}


def literal_keys(pattern: str) -> set[str] | None:
    """Return literal strings one of which starts every match of `pattern`, or None.

    "chest (pain|pressure)" gives {"chest pain", "chest pressure"}; "(face|mouth) droop" gives
    {"face droop", "mouth droop"}. With them a long text is searched with `str.find` (fast)
    and the pattern is tried only where a key occurs. None: no such keys (the pattern can
    start with a class or an optional part); the caller scans the whole text.
    """
    try:
        parsed = re._parser.parse(pattern)  # type: ignore[attr-defined]
    except (re.error, AttributeError, RecursionError):
        return None
    # Two words make rarer keys ("my chest" rather than "my "), where they stay few.
    for words in (2, 1):
        keys, _ = _prefixes(list(parsed), words)
        # A single Latin letter occurs everywhere; a single Chinese character is a fine key.
        if keys is not None and not any(len(k) < 2 and k.isascii() for k in keys):
            return keys
    return None


def _prefixes(items: list[tuple[Any, Any]], words: int = 1) -> tuple[set[str] | None, bool]:
    """Literal prefixes of a parsed sequence, and whether they cover it whole.

    Expansion stops once every prefix holds `words` whole words: enough to look them up.
    """
    c = re._constants  # type: ignore[attr-defined]
    enough = _WHOLE_WORDS[words]
    result = {""}
    for index, (op, av) in enumerate(items):
        if result != {""} and all(enough.match(r) for r in result):
            return result, False
        if op is c.LITERAL:
            result = {r + chr(av) for r in result}
            continue
        if op is c.AT and result == {""}:
            continue  # a leading \b: zero width
        if op is c.IN:
            chars = _class_chars(av)
            if chars is None:
                return result, False
            result = {r + ch for r in result for ch in chars}
        elif op in (c.SUBPATTERN, c.BRANCH):
            seqs = [av[-1]] if op is c.SUBPATTERN else av[1]
            parts = [_prefixes(list(seq), words) for seq in seqs]
            if any(keys is None for keys, _ in parts):
                return result, False
            result = {r + k for r in result for keys, _ in parts for k in keys or ()}
            if not all(whole for _, whole in parts):
                return (result if len(result) <= _MAX_KEYS else None), False
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] == 0:
            # "x? rest": the keys of "x rest" and of "rest".
            rest = items[index + 1 :]
            with_it, _ = _prefixes(list(av[2]) + rest, words)
            without, _ = _prefixes(rest, words)
            if with_it is None or without is None:
                return None, False
            return {r + k for r in result for k in with_it | without}, False
        else:
            return result, False
        if len(result) > _MAX_KEYS:
            return None, False
    return result, True


def _class_chars(items: Any) -> list[str] | None:
    """The characters of a small character class ([abc], [7-9]); None for others."""
    c = re._constants  # type: ignore[attr-defined]
    chars: list[str] = []
    for op, av in items:
        if op is c.LITERAL:
            chars.append(chr(av))
        elif op is c.RANGE and av[1] - av[0] < 10:
            chars += [chr(x) for x in range(av[0], av[1] + 1)]
        else:
            return None
    return chars


def pattern_keys(patterns: Patterns) -> frozenset[str] | None:
    """Literal keys for every pattern of a finding, or None if one pattern has none."""
    keys: set[str] = set()
    for items in patterns.values():
        for p in items:
            found = literal_keys(p)
            if found is None:
                return None
            keys |= found
    return frozenset(_minimal(keys))


def _minimal(keys: set[str]) -> list[str]:
    """Drop keys that a shorter key already starts: "ache" covers "ache in my"."""
    kept: list[str] = []
    for key in sorted(keys):
        if not (kept and key.startswith(kept[-1])):
            kept.append(key)
    return kept


# Texts shorter than this are scanned whole: cheaper than indexing their words first.
_SCAN_WHOLE_BELOW = 2_000
_FIRST_WORD = re.compile(r"[^\W_]*")
_PAIR = re.compile(r"[^\W_]+ [^\W_]+")
_WORDS = re.compile(r"[^\W_]+")


class TextScanner:
    """Find patterns in one long text by trying them only where their first word occurs.

    Every English pattern starts at a word start with a known first word (its literal keys);
    the text's words are indexed once, so a pattern costs a lookup and a few `match` calls
    instead of a pass over the whole text: the cost of a message stays linear in its length
    with a small constant, whatever the number of patterns.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._positions: dict[str, list[int]] | None = None
        self._sorted: list[str] = []
        self._sorted_pairs: list[str] = []

    def _index(self) -> dict[str, list[int]]:
        """Index the text's words, and its pairs of words one space apart ("my chest")."""
        if self._positions is None:
            positions: dict[str, list[int]] = {}
            previous: re.Match[str] | None = None
            for m in _WORDS.finditer(self.text):
                positions.setdefault(m.group(0), []).append(m.start())
                if (
                    previous is not None
                    and previous.end() + 1 == m.start()
                    and self.text[previous.end()] == " "
                ):
                    pair = f"{previous.group(0)} {m.group(0)}"
                    positions.setdefault(pair, []).append(previous.start())
                previous = m
            self._positions = positions
            self._sorted = sorted(k for k in positions if " " not in k)
            self._sorted_pairs = sorted(k for k in positions if " " in k)
        return self._positions

    def _starts(self, keys: frozenset[str]) -> list[int]:
        index = self._index()
        starts: set[int] = set()
        for key in keys:
            pair = _PAIR.match(key)
            head = _FIRST_WORD.match(key)
            token = head.group(0) if head else ""
            if pair is not None and key.isascii():
                table, token = self._sorted_pairs, pair.group(0)
            elif token and token.isascii():
                table = self._sorted
            else:
                at = self.text.find(key)
                while at != -1:
                    starts.add(at)
                    at = self.text.find(key, at + 1)
                continue
            i = bisect.bisect_left(table, token)
            while i < len(table) and table[i].startswith(token):
                starts.update(index[table[i]])
                i += 1
        return sorted(starts)

    def finditer(
        self, pattern: re.Pattern[str], keys: frozenset[str] | None
    ) -> Iterator[re.Match[str]]:
        """Yield the pattern's matches (trying it where its keys' first words occur)."""
        if keys is None or len(self.text) < _SCAN_WHOLE_BELOW:
            yield from pattern.finditer(self.text)
            return
        end = -1
        for start in self._starts(keys):
            if start < end:
                continue  # inside the previous match, as finditer would skip it
            found = pattern.match(self.text, start)
            if found is not None and found.end() > found.start():
                end = found.end()
                yield found
