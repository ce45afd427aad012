"""The lay-language lexicon (`lexicon/*.yaml`): red-flag findings as patients word them.

Each finding lists lay phrasings (regular expressions) and exemplar sentences in English and
Chinese, the clinical sources it was written from, and the rule whose level and explanation it
carries on its own (`implies`). Multi-word senses ("cold sweat") keep a finding from matching
a word that means something else inside them.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


def _minimal(keys: set[str]) -> list[str]:
    """Drop keys that a shorter key already starts: "ache" covers "ache in my"."""
    kept: list[str] = []
    for key in sorted(keys):
        if not (kept and key.startswith(kept[-1])):
            kept.append(key)
    return kept


_LEADING_WORD = re.compile(r"[^\W_]+")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _ends_word(op: Any, av: Any) -> bool:
    """Whether a parsed item always ends on a non-word character (or a word boundary)."""
    c = re._constants  # type: ignore[attr-defined]
    if op is c.LITERAL:
        return not chr(av).isalnum()
    if op is c.AT:
        return bool(av is c.AT_BOUNDARY)
    if op is c.IN:
        return all(
            (kind is c.LITERAL and not chr(value).isalnum())
            or (kind is c.CATEGORY and value in (c.CATEGORY_SPACE, c.CATEGORY_NOT_WORD))
            for kind, value in av
        )
    if op in (c.MAX_REPEAT, c.MIN_REPEAT):
        body = list(av[2])
        return av[0] >= 1 and len(body) == 1 and _ends_word(*body[0])
    return False


Needs = tuple[frozenset[str], ...]


def needed_words(pattern: str) -> tuple[Needs, Needs]:
    """What a text must hold for `pattern` to match in it: words, and strings anywhere.

    Each place of the pattern's top-level sequence gives the literals that can begin there;
    every match holds one of each place's set. A place that starts a word ("face droop" has
    two: the start, and after the space) gives words: a whole word when written "word " (the
    pattern goes on with a space or a sign), else a word's beginning. A place after a gap
    (".{0,40}(tongue|throat)") gives strings that may sit anywhere. Used only to skip patterns
    (a necessary condition), so a place that cannot be read gives nothing, never a wrong
    answer.
    """
    try:
        items = list(re._parser.parse(pattern))  # type: ignore[attr-defined]
    except (re.error, AttributeError, RecursionError):
        return (), ()
    needs: set[frozenset[str]] = set()
    inside: set[frozenset[str]] = set()
    for index in range(len(items)):
        keys, _ = _prefixes(items[index:], 1)
        if not keys:
            continue
        if index and not _ends_word(*items[index - 1]):
            if all(len(key) >= 3 or not key.isascii() for key in keys):  # "ab" is everywhere
                inside.add(frozenset(_minimal(set(keys))))
            continue
        heads = set()
        for key in keys:
            head = _LEADING_WORD.match(key)
            if head is None:
                break  # a place that may start with a space or a sign: nothing to require
            word = head.group(0)
            # "bee " must be the word "bee" ("been" will not do); "swell" begins a word.
            heads.add(word + " " if len(key) > len(word) else word)
        else:
            needs.add(frozenset(_minimal(heads)))
    return tuple(sorted(needs, key=len)), tuple(sorted(inside, key=len))


@dataclass(frozen=True)
class _Plan:
    """One pattern of a set, as a long text is searched for it."""

    # Words ("word ": whole; else a beginning; Chinese: strings) the text must hold, one of
    # each set.
    needs: Needs
    # Strings the text must hold anywhere (after a gap in the pattern), one of each set.
    inside: Needs
    # Literal strings one of which starts every match; None: the pattern can start anywhere.
    keys: frozenset[str] | None
    worded: bool
    alone: re.Pattern[str] | None = None

    @functools.cached_property
    def lookups(self) -> tuple[tuple[str, bool, tuple[str, ...]], ...]:
        """The keys by token: (token, whole word?, longer keys to check; none: any place)."""
        by_token: dict[str, set[str]] = {}
        for key in self.keys or ():
            by_token.setdefault(_token(key, self.worded), set()).add(key)
        lookups: list[tuple[str, bool, tuple[str, ...]]] = []
        for token, keys in sorted(by_token.items()):
            if token in keys:  # the token alone is a key: each place of it may start a match
                lookups.append((token, False, ()))
            else:
                # "my chest", "my arm": the word "my", followed by the rest of a key.
                lookups.append((token, self.worded, tuple(sorted(keys))))
        return tuple(lookups)


# Chinese keys are looked up by their first characters.
_CHINESE_TOKEN = 2


def _token(key: str, worded: bool) -> str:
    """What a key is looked up by: its leading word (English), its first characters."""
    if not worded:
        return key[:_CHINESE_TOKEN]
    head = _LEADING_WORD.match(key)
    return head.group(0) if head else ""


def _trie(strings: Iterable[str]) -> str:
    """A regular expression matching the longest of `strings` at a place, as a trie.

    Python's `re` tries alternatives one after the other; a trie reads each character once.
    """
    root: dict[str, Any] = {}
    for string in strings:
        node = root
        for ch in string:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + render(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return render(root)


class Vocabulary:
    """The Chinese literals a collection of pattern sets looks for in long texts, as a trie.

    Chinese has no spaces to split words at: a long Chinese text is read once with the trie
    (in C, by `re`) for the keys' first characters at each place.
    """

    def __init__(self) -> None:
        self._strings: set[str] = set()
        self.han = True  # every key holds a Chinese character
        self._compiled: re.Pattern[str] | None = None

    def add(self, plans: Iterable[_Plan]) -> None:
        """Take in the keys and needed strings of some patterns."""
        for plan in plans:
            if not plan.worded:
                self._strings |= {token for need in plan.needs for token in need}
                # A pattern that needs a Chinese character ("24小时" too) cannot match a text
                # without one.
                needs_han = [plan.keys] if plan.keys else []
                self.han = self.han and any(
                    all(_HAN.search(k) for k in need) for need in needs_han + list(plan.inside)
                )
        self._compiled = None

    def expression(self) -> re.Pattern[str] | None:
        """The compiled trie: a zero-width match at each place, capturing the token there."""
        if self._compiled is None and self._strings:
            self._compiled = re.compile("(?=(" + _trie(self._strings) + "))")
        return self._compiled


@dataclass(frozen=True)
class PatternSet:
    """Per-language patterns compiled into one expression, with how to search long texts."""

    pattern: re.Pattern[str]
    plans: tuple[_Plan, ...]
    vocabulary: Vocabulary

    @classmethod
    def of(cls, patterns: Patterns, vocabulary: Vocabulary) -> PatternSet:
        """Compile patterns (see `compile_patterns`) and plan each one's search."""
        plans = []
        for language, items in patterns.items():
            worded = language != "zh"
            for p in items:
                found = literal_keys(p)
                keys = frozenset(found) if found else None
                if keys is not None and worded and not all(_token(k, True) for k in keys):
                    keys = None  # a key that starts with a sign: not in the word index
                needs, inside = needed_words(p)
                if not worded:
                    # Chinese has no word starts: every needed string may sit anywhere.
                    places = {frozenset(w.rstrip() for w in need) for need in needs + inside}
                    tokens = frozenset(_token(k, False) for k in keys or ())
                    needs, inside = ((tokens,) if tokens else ()), tuple(places)
                # A pattern without keys is searched for on its own, over the whole text.
                alone = None if keys else compile_patterns({language: [p]})
                plans.append(_Plan(needs, inside, keys, worded, alone))
        vocabulary.add(plans)
        return cls(compile_patterns(patterns), tuple(plans), vocabulary)


# Texts shorter than this are scanned whole: cheaper than planning their search.
_SCAN_WHOLE_BELOW = 2_000
# Past this many token searches in one text, indexing all its words once is cheaper.
_SEARCHES_BEFORE_INDEX = 64


@functools.lru_cache(maxsize=16_384)
def _token_expression(token: str, worded: bool, whole: bool) -> re.Pattern[str]:
    """Find a token; a worded one at a word start (`whole`: as a whole word)."""
    escaped = re.escape(token)
    if not worded:
        return re.compile(escaped)
    # The literal first lets `re` jump from one occurrence to the next; the lookbehind then
    # asks for a word start.
    return re.compile(escaped + rf"(?<![^\W_]{escaped})" + (r"(?![^\W_])" if whole else ""))


class TextScanner:
    """Find patterns in one long text, trying each only where it can match.

    The text's distinct words are read once (in C), and a Chinese text is read once with each
    vocabulary's trie. A pattern whose needed words or strings are not all in the text is
    skipped; one that may match is tried only where one of its literal starts occurs. Most
    of a long message is words no red-flag pattern needs, so its cost is a pass in C plus a
    few lookups per pattern.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._words: set[str] | None = None
        self._prefixes: set[str] = set()
        self._joined = ""
        self._no_han = _HAN.search(text) is None
        self._chinese: dict[int, set[str] | None] = {}  # prefixes of tokens, per vocabulary
        self._places: dict[tuple[str, bool, bool], list[int]] = {}
        # A few tokens are found by searching the text; many, from an index of its words.
        self._searches = 0
        self._index: dict[str, list[int]] | None = None
        self._sorted: list[str] = []
        self._key_starts: dict[tuple[str, bool, bool, tuple[str, ...]], list[int]] = {}
        self._strings: dict[str, bool] = {}

    def _read_words(self) -> set[str]:
        if self._words is None:
            self._words = set(_LEADING_WORD.findall(self.text))
            self._prefixes = {w[:i] for w in self._words for i in range(1, len(w) + 1)}
            self._joined = "".join(w + "\n" for w in self._words)
        return self._words

    def _read_chinese(self, vocabulary: Vocabulary) -> set[str] | None:
        """Prefixes of the vocabulary's tokens in the text; None: no Chinese key can be."""
        if id(vocabulary) not in self._chinese:
            expression = vocabulary.expression()
            found = None
            if expression is not None and not (vocabulary.han and self._no_han):
                tokens = set(expression.findall(self.text))
                found = {t[:i] for t in tokens for i in range(1, len(t) + 1)}
            self._chinese[id(vocabulary)] = found
        return self._chinese[id(vocabulary)]

    def _has(self, need: str, chinese: set[str] | None) -> bool:
        """Whether the text holds a needed word ("word ": as a whole word) or Chinese token."""
        if chinese is not None:
            return _token(need, False) in chinese
        words = self._read_words()
        return need[:-1] in words if need.endswith(" ") else need in self._prefixes

    def _holds(self, string: str) -> bool:
        """Whether `string` occurs anywhere in the text."""
        known = self._strings.get(string)
        if known is None:
            self._read_words()
            # Searched among the text's distinct words, one per line (far shorter): letters
            # lie inside a word; letters then a sign ("tongue ") end one.
            head = _LEADING_WORD.match(string)
            if head is None:
                known = string in self.text
            elif head.end() == len(string):
                known = string in self._joined
            else:
                known = head.group(0) + "\n" in self._joined
            self._strings[string] = known
        return known

    def _may_match(self, plan: _Plan, vocabulary: Vocabulary) -> bool:
        chinese = None
        if not plan.worded:
            chinese = self._read_chinese(vocabulary)
            if chinese is None:
                return False
        return all(any(self._has(w, chinese) for w in need) for need in plan.needs) and all(
            any(self._holds(w) for w in need) for need in plan.inside
        )

    def _token_places(self, token: str, worded: bool, whole: bool) -> list[int]:
        """Where `token` starts a word (`whole`: is one), or for Chinese occurs at all."""
        key = (token, worded, whole)
        found = self._places.get(key)
        if found is None:
            if worded and self._searches >= _SEARCHES_BEFORE_INDEX:
                found = self._indexed(token, whole)
            else:
                self._searches += 1
                expression = _token_expression(token, worded, whole)
                found = [m.start() for m in expression.finditer(self.text)]
            self._places[key] = found
        return found

    def _indexed(self, token: str, whole: bool) -> list[int]:
        """Where words start with (`whole`: are) `token`, from an index of every word."""
        if self._index is None:
            index: dict[str, list[int]] = {}
            for m in _LEADING_WORD.finditer(self.text):
                index.setdefault(m.group(0), []).append(m.start())
            self._index, self._sorted = index, sorted(index)
        if whole:
            return self._index.get(token, [])
        found: list[int] = []
        i = bisect.bisect_left(self._sorted, token)
        while i < len(self._sorted) and self._sorted[i].startswith(token):
            found += self._index[self._sorted[i]]
            i += 1
        return found

    def _starts(self, token: str, worded: bool, whole: bool, keys: tuple[str, ...]) -> list[int]:
        """Where a token starts one of `keys` (none: anywhere), computed once per text."""
        found = self._key_starts.get((token, worded, whole, keys))
        if found is None:
            found = self._token_places(token, worded, whole)
            if keys:
                found = [p for p in found if self.text.startswith(keys, p)]
            self._key_starts[token, worded, whole, keys] = found
        return found

    def finditer(self, patterns: PatternSet) -> Iterator[re.Match[str]]:
        """Yield the matches of a pattern set, at every place where one of them can start.

        The places are tried in order, as `re.finditer` would, skipping those inside a match.
        """
        pattern = patterns.pattern
        if len(self.text) < _SCAN_WHOLE_BELOW:
            yield from pattern.finditer(self.text)
            return
        plans = [plan for plan in patterns.plans if self._may_match(plan, patterns.vocabulary)]
        if not plans:
            return
        starts: set[int] = set()
        for plan in plans:
            if plan.alone is not None:
                starts.update(m.start() for m in plan.alone.finditer(self.text))
            for token, whole, keys in plan.lookups:
                starts.update(self._starts(token, plan.worded, whole, keys))
        end = -1
        for start in sorted(starts):
            if start < end:
                continue  # inside the previous match, as finditer would skip it
            found = pattern.match(self.text, start)
            if found is not None and found.end() > found.start():
                end = found.end()
                yield found
