"""What every subcommand shares: the common options, ``--option key=value`` parsing, and the one place
where errors become messages and exit codes.

Nothing here imports torch or transformers: ``wiseedit --help`` must stay instant. Commands import the
library inside their bodies.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
import warnings
from typing import Annotated, Any, Callable, Literal, Optional, TypeVar

import typer
from typer.exceptions import TyperException

from wiseedit.errors import BadInputError, EditFileWarning, InputProblems, WiseEditError

#: Same values as :data:`wiseedit.models.DType` (that module imports torch; a test keeps them equal).
DTypeChoice = Literal["auto", "float32", "bfloat16", "float16"]

EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a Unix tool killed by it
EXIT_TERMINATED = 143   # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """Raised by :func:`raise_terminated`, the SIGTERM handler the console entry point installs: a
    cancelled CI job or ``docker stop`` unwinds like Ctrl-C, so temporary folders are removed and nothing
    saved is touched."""


def raise_terminated(signum, frame) -> None:
    raise Terminated()

MODEL_PANEL = "Model"
OUTPUT_PANEL = "Output"
METHOD_PANEL = "Method"

# -- options shared by the subcommands (each command declares them, so each --help lists them) ---------

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="MODEL", rich_help_panel=MODEL_PANEL,
    help="Base model: a local folder, an alias ([bold]world[/bold], llama2, mistral, ...) or a Hugging Face "
         "id in the local cache. Default when a delta is given: the base the delta records.")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", metavar="DEVICE", rich_help_panel=MODEL_PANEL,
    help="auto (a GPU if there is one), cpu, cuda or cuda:N.")]
DTypeOpt = Annotated[DTypeChoice, typer.Option(
    "--dtype", metavar="DTYPE", rich_help_panel=MODEL_PANEL,
    help="auto, float32, bfloat16 or float16; auto is the checkpoint's dtype on GPU, float32 on CPU.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", metavar="N", min=1, rich_help_panel=MODEL_PANEL, show_default=False,
    help="CPU threads torch may use. Default: OMP_NUM_THREADS when set, else 1 (faster on a shared or small "
         "machine; on a dedicated many-core CPU with a large model, raise it).")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", rich_help_panel=OUTPUT_PANEL,
    help="Print one JSON document on stdout; progress, logs and tables go to stderr.")]
ChatTemplateOpt = Annotated[Optional[str], typer.Option(
    "--chat-template", metavar="auto|none", rich_help_panel=MODEL_PANEL, show_default=False,
    help="auto: put each prompt to the model as a user message through the tokenizer's chat template, "
         "when it has one (instruct models); none: raw text. Default: auto (with --delta, the delta's own).")]
DebugOpt = Annotated[bool, typer.Option(
    "--debug", rich_help_panel=OUTPUT_PANEL, help="Show the Python traceback of an error.")]

#: CPU threads when neither --threads nor OMP_NUM_THREADS says. One WISE edit of the world model on a
#: 2-core machine shared with other work (load average 11): median 3.9 s with 1 thread, 70.8 s with
#: torch's default (2, one per core): busy-waiting OpenMP threads fight the other work for the cores
#: (benchmarks/threads.py). A fixed number, not one read from the load, so reruns compute alike.
DEFAULT_THREADS = 1


def use_threads(threads: int | None) -> int:
    """Set torch's CPU threads for this command: `threads` (``--threads``), else ``OMP_NUM_THREADS``
    when it holds a positive whole number, else DEFAULT_THREADS; returns the number set."""
    import torch

    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else DEFAULT_THREADS
    torch.set_num_threads(threads)
    return threads


F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Run `command`, turning failures into one message on stderr and the exit code of conventions.md.

    WiseEditError: ``error: <message>`` (one line per problem of an InputProblems) and its exit code
    (2 bad input, 1 failed check, 3 otherwise); an OSError (the filesystem refused): ``error: <file>:
    <reason>``, exit 3; anything else: one ``internal error`` line and exit 3; Ctrl-C: exit 130; SIGTERM
    (with the entry point's handler): exit 143; the reader of stdout gone (``| head``): no message, exit
    141 (what was to be saved is saved by then). With ``--debug`` (the command's `debug` argument) the
    traceback comes first.
    Typer's own exits and usage errors (exit 2) pass through untouched.
    """

    @functools.wraps(command)
    def run(*args, **kwargs):
        debug = bool(kwargs.get("debug", False))
        try:
            with warnings.catch_warnings():  # restores the previous handler afterwards
                warnings.showwarning = _show_warning(warnings.showwarning)
                return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except WiseEditError as error:
            _report(debug, _lines(error), error.exit_code)
        except Terminated:
            _report(debug, ["error: terminated"], EXIT_TERMINATED)
        except KeyboardInterrupt:
            _report(debug, ["error: interrupted"], EXIT_INTERRUPTED)
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except OSError as error:  # the filesystem refused (full disk, permissions): not a bug, same exit
            where = f"{error.filename}: " if error.filename else ""
            _report(debug, [f"error: {where}{error.strerror or _first_line(error)}"], EXIT_INTERNAL)
        except Exception as error:  # a bug or a runtime failure (out of memory, ...): no traceback by default
            what = f"{type(error).__name__}: {_first_line(error)}"
            hint = "" if debug else " (run with --debug for the traceback)"
            _report(debug, [f"internal error: {what}{hint}"], EXIT_INTERNAL)

    return run  # type: ignore[return-value]


def _show_warning(default: Callable) -> Callable:
    """A ``warnings.showwarning`` that prints wiseedit's own warnings as one ``warning: ...`` line on
    stderr (no source location: the message names the file and line it is about) and passes the others on."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, EditFileWarning):
            sys.stderr.write(f"warning: {message}\n")
            sys.stderr.flush()
        else:
            default(message, category, filename, lineno, file, line)
    return show


def _silence_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that the interpreter's last flush does not fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test runner's capture)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _lines(error: WiseEditError) -> list[str]:
    problems = error.problems if isinstance(error, InputProblems) else error.for_cli().splitlines() or [""]
    return [f"error: {problem}" for problem in problems]


def _report(debug: bool, lines: list[str], code: int):
    if debug:
        traceback.print_exc(file=sys.stderr)
    # plain writes, not rich: messages hold brackets and paths that must come out verbatim, unwrapped
    sys.stderr.write("".join(line + "\n" for line in lines))
    sys.stderr.flush()
    raise typer.Exit(code)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


# -- --option key=value -------------------------------------------------------------------------------


def parse_options(pairs: list[str] | None) -> dict:
    """``["n_iter=30", "merge_algorithm=ties"]`` -> ``{"n_iter": 30, "merge_algorithm": "ties"}``.

    Values are read as JSON when they parse (30, 0.5, true, null, [1, 2]; also True/False/None),
    else kept as strings. Which keys exist is the method's business: it refuses unknown ones.
    """
    options: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInputError(f"--option expects KEY=VALUE (e.g. --option n_iter=30), got {pair!r}")
        if key in options:
            raise BadInputError(f"--option {key} is given twice")
        options[key] = coerce(value.strip())
    return options


def coerce(text: str) -> Any:
    """A command-line value as JSON if it parses, with Python spellings of the constants, else the text."""
    python = {"True": True, "False": False, "None": None}
    if text in python:
        return python[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def with_flags(options: dict, **flags: Any) -> dict:
    """`options` plus the dedicated flags that were given (--layer, --module, --seed), refusing to take
    the same setting from both."""
    out = dict(options)
    for key, value in flags.items():
        if value is None:
            continue
        if key in out:
            raise BadInputError(f"--{key} and --option {key}=... both set {key}: keep one")
        out[key] = value
    return out
