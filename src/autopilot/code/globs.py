"""Path globs of code mode's settings (`code_mode.files`, `protected`, `sealed`, the evaluator's files).

`**` crosses folders, `*` and `?` stay inside one, `[...]` is a class; a pattern that names a folder covers what is
inside it. Paths are relative to the project root, with `/`.

Usage:
    matches("model/a/b.py", ["model/**"])      # the first pattern that matches, or None
"""

from __future__ import annotations

import functools
import re


@functools.cache
def glob_regex(pattern: str) -> re.Pattern:
    """A path glob as a regex: `**` crosses folders, `*` and `?` stay inside one, `[...]` is a class."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            out, i = out + "[" + pattern[i + 1:end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def matches(path: str, patterns) -> str | None:
    """The first glob that matches `path` (or a folder above it), or None."""
    for pattern in patterns:
        p = pattern.strip("/").removeprefix("./")
        if glob_regex(p).match(path) or path.startswith(p + "/"):
            return pattern
    return None
