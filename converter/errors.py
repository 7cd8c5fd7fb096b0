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

from collections.abc import Sequence


class ConvertkitError(Exception):
    """Base of every deliberate convertkit error."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


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
