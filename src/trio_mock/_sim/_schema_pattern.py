"""Strings that match a simple ``pattern`` (``_schema_values``): literals, classes, quantifiers,
groups, alternation, anchors; anything else is ``_Unsupported``."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


# --- generating strings from simple patterns ------------------------------------------------

_Gen = Callable[[], str]
_ANY = string.ascii_letters + string.digits
_PRINTABLE = _ANY + " -_.,:;!?@#/"
_CLASS_ESCAPES = {
    "d": string.digits,
    "w": _ANY + "_",
    "s": " ",
    "D": string.ascii_letters + " -_.",
    "W": " -.,:;!?@#/",
    "S": _ANY,
}
_CONTROL = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}
_FORMAT_ALIASES = {"url": "uri", "iri": "uri", "uri-reference": "uri", "idn-email": "email"}
_BRACES = re.compile(r"\{([0-9]*)(,?)([0-9]*)\}")
_HEX = {"x": re.compile(r"[0-9a-fA-F]{2}"), "u": re.compile(r"[0-9a-fA-F]{4}")}
_MAX_REPEAT = 1_000


class _Unsupported(Exception):
    """The pattern uses something the small generator does not know."""


def _pattern_generator(pattern: str, rng: np.random.Generator) -> _Gen | None:
    """A function drawing strings that ``pattern`` matches, or None when it is beyond us."""
    parser = _PatternParser(pattern, rng)
    try:
        generate = parser.alternation()
        if parser.i != len(pattern):
            raise _Unsupported
    except (_Unsupported, RecursionError):
        return None
    return generate


class _PatternParser:
    """Recursive descent over a regex subset; each method returns a generator closure."""

    def __init__(self, pattern: str, rng: np.random.Generator) -> None:
        self.p, self.i, self.rng = pattern, 0, rng

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def take(self) -> str:
        if self.i >= len(self.p):
            raise _Unsupported
        self.i += 1
        return self.p[self.i - 1]

    def chars(self, options: str) -> _Gen:
        rng = self.rng
        return lambda: options[int(rng.integers(len(options)))]

    def alternation(self) -> _Gen:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        rng = self.rng
        return lambda: branches[int(rng.integers(len(branches)))]()

    def sequence(self) -> _Gen:
        parts: list[_Gen] = []
        while self.peek() not in {"", "|", ")"}:
            atom = self.atom()
            bounds = self.quantifier()
            parts.append(atom if bounds is None else self.repeat(atom, *bounds))
        return lambda: "".join(part() for part in parts)

    def repeat(self, atom: _Gen, low: int, high: int) -> _Gen:
        rng = self.rng
        return lambda: "".join(atom() for _ in range(low + int(rng.integers(high - low + 1))))

    def quantifier(self) -> tuple[int, int] | None:
        c = self.peek()
        if c in {"?", "*", "+"}:
            self.i += 1
            low, high = {"?": (0, 1), "*": (0, 3), "+": (1, 4)}[c]
        elif c == "{" and (m := _BRACES.match(self.p, self.i)) and (m[1] or m[3]):
            self.i = m.end()
            low = int(m[1] or 0)
            high = int(m[3]) if m[3] else low + 3 if m[2] else low
        else:
            return None
        if self.peek() in {"?", "+"}:  # lazy or possessive: the same strings match
            self.i += 1
        if high > _MAX_REPEAT:
            raise _Unsupported
        return low, high

    def atom(self) -> _Gen:
        c = self.take()
        if c == "(":
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith("?P<", self.i) and ">" in self.p[self.i :]:
                self.i = self.p.index(">", self.i) + 1
            elif self.peek() == "?":  # lookaround, flags, conditionals
                raise _Unsupported
            inner = self.alternation()
            if self.take() != ")":
                raise _Unsupported
            return inner
        if c == "[":
            return self.chars(self.char_class())
        if c == ".":
            return self.chars(_ANY)
        if c in {"^", "$"} or (c == "\\" and self.peek() in {"A", "Z"}):
            self.i += c == "\\"
            return lambda: ""  # anchors: the generated string is the whole match
        if c == "\\":
            return self.chars(self.escape())
        if c in {"*", "+", "?"}:
            raise _Unsupported
        return lambda: c

    def escape(self) -> str:
        c = self.take()
        if c in _CLASS_ESCAPES or c in _CONTROL:
            return _CLASS_ESCAPES.get(c) or _CONTROL[c]
        if c in {"x", "u"} and (m := _HEX[c].match(self.p, self.i)):
            self.i = m.end()
            return chr(int(m[0], 16))
        if c.isascii() and c.isalnum():  # \b, backreferences, \N{...} ...
            raise _Unsupported
        return c

    def char_class(self) -> str:
        negate = self.peek() == "^"
        self.i += negate
        members: list[str] = []
        first = True
        while (c := self.take()) != "]" or first:
            first = False
            if c == "\\":
                c = self.escape()
                if len(c) != 1:
                    members.extend(c)
                    continue
            if self.peek() == "-" and self.p[self.i + 1 : self.i + 2] not in {"", "]"}:
                self.i += 1
                end = self.take()
                end = self.escape() if end == "\\" else end
                if len(end) != 1 or ord(end) < ord(c):
                    raise _Unsupported
                members.extend(chr(o) for o in range(ord(c), ord(end) + 1))
            else:
                members.append(c)
        excluded = set(members)
        allowed = [ch for ch in _PRINTABLE if ch not in excluded] if negate else members
        if not allowed:
            raise _Unsupported
        return "".join(dict.fromkeys(allowed))
