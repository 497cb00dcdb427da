"""The errors wiseedit raises on purpose, each mapped to the CLI exit code of conventions.md.

Anything else that escapes is a bug or a runtime failure (exit 3 in the CLI, traceback with --debug).

The library speaks to a Python caller: ``str(error)`` names parameters (``overwrite=True``). Where the
command line spells the advice differently (``--force``), the error also carries that sentence as
:attr:`WiseEditError.cli`, which is what ``wiseedit`` prints.
"""

from __future__ import annotations


class WiseEditError(Exception):
    """An expected failure with a one-sentence message for the user."""

    exit_code = 3

    def __init__(self, message: str = "", *, cli: str | None = None):
        super().__init__(message)
        #: The same sentence in the command line's words (its flags for the parameters), or None when
        #: ``str(self)`` reads the same on both.
        self.cli = cli

    def for_cli(self) -> str:
        """The message as the command line prints it."""
        return self.cli if self.cli is not None else str(self)


class BadInputError(WiseEditError):
    """Bad usage or bad input (edit file, model name, delta): exit 2, nothing written."""

    exit_code = 2


class InputProblems(BadInputError):
    """Several located problems in one input file, each ``file:line: field: what is wrong``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more if problems else "invalid input")

    def __str__(self) -> str:
        return "\n".join(self.problems)


class CheckFailed(WiseEditError):
    """A check the user asked for did not pass (e.g. an eval below --fail-under): exit 1."""

    exit_code = 1


class EditFileWarning(UserWarning):
    """Something in an edit file that is read but probably not what was meant (an unknown field): the
    CLI prints it as one ``warning:`` line."""
