"""Errors for people: one line that says what is wrong, where, and what to do.

Every error convertkit raises on purpose derives from :class:`ConvertkitError` and carries the
exit code the CLI returns for it (the exit codes are a documented contract, see README)::

    ConvertkitError                      (base; never raised itself)
    ├── UserError              exit 2    bad input or usage: fix the command line or the file
    │   ├── InputError                   a model/feeds/weights file that cannot be used
    │   ├── UsageError                   options that do not fit together or do not parse
    │   └── MissingDependencyError       a framework or tool is not installed
    ├── ConversionError        exit 3    the converter could not produce a model
    │   ├── StageError                   a stage failed; names the stage and those before it
    │   └── UnsupportedOpError           ops the target cannot express, all named at once
    └── ParityError            exit 1    a model was produced but does not compute the same

Anything else that escapes is a bug in convertkit and is shown with its traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # terminal colours some frameworks put in their messages


class ConvertkitError(Exception):
    """Base of every deliberate convertkit error."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled whole, class and fields (isolate.py raises a child's error in the parent); the
        subclasses' __init__ take other arguments than ``args``."""
        return _rebuild, (type(self), dict(self.__dict__))


def _rebuild(cls: type[ConvertkitError], state: dict[str, Any]) -> ConvertkitError:
    exc = cls.__new__(cls)
    exc.__dict__.update(state)
    exc.args = (exc.one_line(),)
    return exc


class UserError(ConvertkitError):
    exit_code = 2


class InputError(UserError):
    """A model, feeds or weights file that cannot be used."""


class UsageError(UserError):
    """Options that do not parse or do not fit together."""


class MissingDependencyError(UserError):
    """A framework, package or tool that a stage or runner needs is not installed."""


class ConversionError(ConvertkitError):
    exit_code = 3


class StageError(ConversionError):
    """A stage failed. Names the stage and the stages that ran before it."""

    def __init__(self, stage: str, message: str, *, before: Sequence[str] = (), hint: str | None = None):
        self.stage = stage
        self.before = tuple(before)
        where = f"stage '{stage}'" + (f" (after {' -> '.join(self.before)})" if self.before else "")
        super().__init__(f"{where} failed: {message}", hint=hint)


class UnsupportedOpError(ConversionError):
    """The target cannot express some ops. All of them are named, not only the first."""

    def __init__(self, target: str, ops: Sequence[str], *, hint: str | None = None):
        self.target = target
        self.ops = tuple(ops)
        super().__init__(f"{target} does not support op(s): {', '.join(self.ops)}", hint=hint)


class ParityError(ConvertkitError):
    exit_code = 1


def first_line(exc: BaseException, *, limit: int = 300, join_lines: bool = False, with_type: bool = False,
               fallback: bool = True, strip_ansi: bool = False, keep_trailing_space: bool = False,
               skip: Callable[[str], bool] | None = None) -> str:
    """A foreign exception's message on one line, for a message of ours: by default its first non-blank
    line, stripped, cut to ``limit`` characters, or the type name when the message is empty.

    ``join_lines``: the whole message instead, each run of whitespace made one space.
    ``with_type``: ``"TypeName: text"``, even when the text is empty; ``limit`` counts the text only.
    ``fallback=False``: an empty message gives "" rather than the type name.
    ``strip_ansi``: drop terminal colour codes first.
    ``keep_trailing_space``: keep the whitespace that ends the first line when more lines follow.
    ``skip``: lines to pass over, unless every line is one.
    """
    text = str(exc)
    if strip_ansi:
        text = ANSI_ESCAPE.sub("", text)
    if join_lines:
        text = " ".join(text.split())
    else:
        lines = text.strip().splitlines()  # the first one starts at the first non-blank character
        if not keep_trailing_space:
            lines = [ln.strip() for ln in lines if ln.strip()]
        if skip:
            lines = [ln for ln in lines if not skip(ln)] or lines
        text = lines[0] if lines else ""
    if with_type:
        return f"{type(exc).__name__}: {text[:limit]}"
    return (text or (type(exc).__name__ if fallback else ""))[:limit]
