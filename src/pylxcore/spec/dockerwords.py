"""Docker's word processing: variable substitution and quote removal in Dockerfile arguments.

The rules of moby/buildkit's ``shell.Lex`` (frontend/dockerfile/shell/lex.go):
``$V`` and ``${V}``; ``${V:-word}``, ``${V-word}``, ``${V:+word}``,
``${V+word}``, ``${V:?message}`` and ``${V?message}``; single quotes keep
everything; double quotes keep everything but ``$`` and the escapes of ``"``,
``$`` and the escape character; outside quotes the escape character keeps the
next character. An unset variable is the empty string. The Dockerfile's
parser (the ``dockerfile`` package, Docker's own Go parser) splits
instructions into arguments; these functions then process each argument.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["WordError", "process_word", "process_words"]


class WordError(ValueError):
    """An argument Docker's rules refuse (unclosed quote or brace, ``${V:?msg}``); the caller adds where."""


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def words(self, stop: str = "", split: bool = False) -> list[str]:
        """Process up to ``stop`` (or the end); with ``split``, unquoted blanks separate words."""
        words: list[str] = []
        word: list[str] = []
        started = False  # a quoted empty string ("") is still a word
        while True:
            ch = self.peek()
            if not ch:
                if stop:
                    raise WordError(f"missing '{stop}' in {self.text!r}")
                break
            if stop and ch == stop:
                self.next()
                break
            if split and ch in " \t\n":
                self.next()
                if word or started:
                    words.append("".join(word))
                word, started = [], False
                continue
            if ch == "'":
                self.next()
                word.append(self.single_quoted())
                started = True
            elif ch == '"':
                self.next()
                word.append(self.double_quoted())
                started = True
            elif ch == "$":
                word.append(self.dollar())
            else:
                self.next()
                if ch == self.escape:
                    ch = self.next()  # an escape at the very end is dropped
                word.append(ch)
        if word or started or not split:
            words.append("".join(word))
        return words

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise WordError(f"unclosed single quote in {self.text!r}")
        out = self.text[self.pos : end]
        self.pos = end + 1
        return out

    def double_quoted(self) -> str:
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise WordError(f"unclosed double quote in {self.text!r}")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.next()
            if ch == self.escape and self.peek() in ('"', "$", self.escape) and self.peek():
                ch = self.next()
            elif ch == self.escape and not self.peek():
                continue
            out.append(ch)

    def name(self) -> str:
        start = self.pos
        if self.peek().isdigit():
            self.next()  # $1 and the like: one digit (always unset here)
            return self.text[start : self.pos]
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.next()
        return self.text[start : self.pos]

    def dollar(self) -> str:
        self.next()  # the "$"
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.next()  # the "{"
        name = self.name()
        if not name:
            raise WordError(f"bad substitution in {self.text!r}: expected a variable name after '${{'")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        if not ch:
            raise WordError(f"missing '}}' in {self.text!r}")
        if ch not in ("-", "+", "?"):
            raise WordError(
                f"unsupported modifier {(':' if colon else '') + ch!r} in ${{{name}...}} of {self.text!r};"
                " expected :-, -, :+, +, :? or ?"
            )
        word = "".join(self.words(stop="}"))
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if is_set and value is not None else word
        if ch == "+":
            return word if is_set else ""
        if not is_set or value is None:
            raise WordError(f"{name}: {word or 'is not allowed to be unset'}")
        return value


def process_word(text: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """``text`` with variables substituted and quotes removed, as one word.

    Raises:
        WordError: for an unclosed quote or ``${``, an unknown modifier, or a
            ``${V:?message}`` whose variable is unset.
    """
    return _Lexer(text, env, escape).words()[0]


def process_words(text: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """``text`` split into words at unquoted blanks, each processed as by :func:`process_word`.

    Raises:
        WordError: as :func:`process_word`.
    """
    return _Lexer(text, env, escape).words(split=True)
