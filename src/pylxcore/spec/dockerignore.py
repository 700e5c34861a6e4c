"""``.dockerignore``: which context paths a Dockerfile's COPY and ADD leave out.

Docker's rules (moby/patternmatcher): one pattern a line, ``#`` lines and
blank lines ignored, ``!`` re-includes, patterns are cleaned like paths and
relative to the context root (a leading ``/`` means the same), ``*`` and
``?`` do not cross ``/``, ``**`` matches any number of directories, and a
pattern that matches a directory matches everything under it. The last
matching pattern decides.
"""

from __future__ import annotations

import os
import posixpath
import re

import attrs

__all__ = ["IgnoreRules", "ignore_files", "read_dockerignore"]


def _compile(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if pattern[i : i + 1] == "*":
                i += 1
                if pattern[i : i + 1] == "/":
                    i += 1
                out.append(".*" if i >= len(pattern) else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i < len(pattern):
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
                continue
            body = pattern[i:end]
            i = end + 1
            if body.startswith("^"):
                body = "!" + body[1:]
            if body.startswith("!"):
                body = "^" + body[1:].replace("\\", "\\\\")
            else:
                body = body.replace("\\", "\\\\")
            out.append(f"[{body}]")
        else:
            out.append(re.escape(ch))
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


@attrs.frozen
class IgnoreRules:
    """The patterns of one ``.dockerignore``, in order (``!`` kept on re-includes)."""

    patterns: tuple[str, ...] = ()

    def may_keep_under(self, rel: str) -> bool:
        """Whether a ``!`` pattern may bring back something under the ignored
        directory ``rel`` (Docker's rule: the pattern starts with its path)."""
        prefix = posixpath.normpath(rel) + "/"
        return any(p.startswith("!") and (p[1:] + "/").startswith(prefix) for p in self.patterns)

    def ignored(self, rel: str) -> bool:
        """Whether the context path ``rel`` ("dir/file", relative to the context root) is left out."""
        rel = posixpath.normpath(rel)
        if rel in (".", ""):
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for raw in self.patterns:
            negate = raw.startswith("!")
            regex = _compile((raw[1:] if negate else raw).lstrip("/"))
            if any(regex.match(p) for p in prefixes):
                result = not negate
        return result


def _clean(line: str) -> str | None:
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    body = line[1:].strip() if negate else line
    if not body:
        return None
    body = posixpath.normpath(body).lstrip("/") or "."
    return ("!" if negate else "") + body


def ignore_files(context: str | os.PathLike[str], dockerfile: str | os.PathLike[str]) -> list[str]:
    """Where the rules may be, first found first: ``DOCKERFILE.dockerignore``
    beside the Dockerfile (BuildKit's rule), then ``CONTEXT/.dockerignore``."""
    return [os.fspath(dockerfile) + ".dockerignore", os.path.join(os.fspath(context), ".dockerignore")]


def read_dockerignore(
    context: str | os.PathLike[str], dockerfile: str | os.PathLike[str]
) -> tuple[IgnoreRules, str | None]:
    """The rules that apply to a build of ``dockerfile`` in ``context`` and the
    file they came from (``None`` when there is none).

    Raises:
        OSError: when the file exists but cannot be read (the caller names it).
    """
    for path in ignore_files(context, dockerfile):
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            continue
        patterns = tuple(p for p in (_clean(line) for line in text.splitlines()) if p is not None)
        return IgnoreRules(patterns), path
    return IgnoreRules(), None
