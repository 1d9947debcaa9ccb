"""The ``cdn-preheat`` command line: parses arguments, calls the library, renders.

Exit codes: 0 success, 2 bad input or configuration, 3 quota spent with work
still queued, 1 anything else. Errors print as one sentence; ``--debug``
shows the traceback.

One module per group of commands, each registering its commands on the shared
``app`` of ``_common``; a new group is one module and one name in
``COMMAND_MODULES``. The modules import only Typer at start-up: every command
imports what it needs in its body, so ``--help`` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys
from typing import Annotated, Any

import typer

from cdn_preheat.cli._common import State, app

__all__ = ["app", "main"]

# In the order `--help` lists their commands.
COMMAND_MODULES = ("push", "expand", "inspect", "verify", "doctor", "sandbox", "purge", "serve")

for _module in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_module}")


def _command_names() -> tuple[str, ...]:
    names = []
    for info in app.registered_commands:
        if info.name:
            names.append(info.name)
        elif info.callback is not None:
            names.append(info.callback.__name__.replace("_", "-"))
    return tuple(names)


COMMANDS = _command_names()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    State.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from cdn_preheat.redact import install_logging_filter

    install_logging_filter()


ROOT_FLAGS = ("--debug",)

# Click's exceptions, from where Typer takes them: Typer 0.2x carries its own copy
# of Click (typer._click), older Typer uses Click itself.
_click: Any = importlib.import_module(typer.BadParameter.__module__)


def _legacy_form(args: list[str]) -> list[str]:
    """``cdn-preheat VIDEO_ID M3U8_URL [--reset]`` (the old main.py) means ``push``.

    Only when the first word is neither a command nor close to one (a typo such
    as ``expnad`` must never push) and the second is an http(s) URL. A word of
    letters only that is close to a command is refused as a typo.
    """
    from cdn_preheat.errors import InputError

    flags = 0
    while flags < len(args) and args[flags] in ROOT_FLAGS:
        flags += 1
    rest = args[flags:]
    if not rest or rest[0].startswith("-") or rest[0] in COMMANDS:
        return args
    first = rest[0]
    # Command names are letters only; a word with digits or separators (demo-3,
    # ep_101) is a video id, however close its letters are to a command.
    close = difflib.get_close_matches(first.lower(), COMMANDS, n=3, cutoff=0.6)
    if close and first.isalpha():
        options = " or ".join(repr(name) for name in close)
        raise InputError(f"no such command {first!r}; did you mean {options}?")
    if len(rest) >= 2 and _is_http_url(rest[1]):
        return [*args[:flags], "push", *rest]
    if len(rest) >= 2 and not rest[1].startswith("-"):
        # Meant as the old form, but the second word is no playlist URL.
        raise InputError(
            f"no such command {first!r}; the old form VIDEO_ID M3U8_URL needs an http(s)"
            f" URL second, not {rest[1]!r}."
        )
    return args


def _is_http_url(text: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(text.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; usage errors exit 2 (Typer), PreheatErrors print one sentence.

    With ``--debug`` the traceback is printed first (secrets masked) and the exit
    code stays the one the error promises.
    """
    from cdn_preheat import redact
    from cdn_preheat.errors import PreheatError

    raw = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in raw[: next((i for i, a in enumerate(raw) if a not in ROOT_FLAGS), 0)]
    try:
        # Not standalone: Click's usage errors come here, to print as one sentence
        # like every other error (standalone, Click prints its usage block).
        code = app(args=_legacy_form(raw), prog_name="cdn-preheat", standalone_mode=False)
    except _click.NoArgsIsHelpError as exc:
        exc.show()  # `cdn-preheat` alone: the help, exit 2
        sys.exit(exc.exit_code)
    except _click.UsageError as exc:
        _fail(redact.redact(_usage_sentence(exc)), exc.exit_code, debug=debug or State.debug)
    except _click.ClickException as exc:
        _fail(redact.redact(exc.format_message()), exc.exit_code, debug=debug or State.debug)
    except typer.Abort:  # end of input at a prompt
        _fail("aborted.", 1, debug=debug or State.debug)
    except PreheatError as exc:
        _fail(redact.redact(str(exc)), exc.exit_code, debug=debug or State.debug)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug or an unforeseen failure: still one sentence
        detail = redact.redact(str(exc)).strip().splitlines()
        text = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
        _fail(
            f"unexpected failure ({text}); run with --debug for the traceback.",
            1,
            debug=debug or State.debug,
        )
    # A command's return value is not an exit code; typer.Exit(n) returns n here.
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


def _usage_sentence(exc: Any) -> str:
    """Click's usage error as one sentence, naming the command's --help."""
    text = " ".join(exc.format_message().split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    path = exc.ctx.command_path if exc.ctx is not None else "cdn-preheat"
    return f"{text}; see '{path} --help'."


def _fail(message: str, code: int, *, debug: bool) -> None:
    import traceback

    from cdn_preheat import redact, ui

    if debug:
        sys.stderr.write(redact.redact(traceback.format_exc()))
        sys.stderr.flush()
    ui.error(message)
    sys.exit(code)
