"""The ``vlbench`` command: runs the Typer app with global error handling (one line, exit 2)."""

from __future__ import annotations

import errno
import os
import sys
import traceback
from typing import Optional

import click
import typer
from vlbench.cli.app import app, data_app, debug_enabled, err_console, load_plugins, wide_console
from vlbench.errors import VLBenchError


def _classes(*candidates: object) -> tuple[type, ...]:
    return tuple(c for c in candidates if isinstance(c, type))


# newer typer vendors its own click (typer._click) with its own exception classes; catch both kinds
_typer_click = getattr(typer, "_click", None)
_typer_click_exc = getattr(_typer_click, "exceptions", None)
_EXIT = _classes(click.exceptions.Exit, getattr(typer, "Exit", None))
_ABORT = _classes(click.exceptions.Abort, getattr(typer, "Abort", None))
_CLICK_ERROR = _classes(click.ClickException, getattr(_typer_click_exc, "ClickException", None))


__all__ = ["app", "data_app", "main", "cli", "load_plugins", "err_console", "wide_console", "INTERRUPTED", "debug_enabled"]


def _register_commands() -> None:
    from vlbench.cli import commands  # noqa: F401  (attaches run, list, table, score, data ...)


INTERRUPTED = "interrupted; finished results are kept"


def _escape_unprintable_output() -> None:
    """Print a lone surrogate in user text (a hand-edited record, a non-UTF-8 file name) as ``\\udXXX``.

    stdout is strict (or surrogateescape, under a C locale) by default, so one such character in a
    table made any command end with an "unexpected UnicodeEncodeError" after printing half of its
    output; stderr already escapes this way.
    """
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None and getattr(sys.stdout, "errors", None) in ("strict", "surrogateescape"):
        try:
            reconfigure(errors="backslashreplace")
        except (ValueError, OSError):  # a stream that cannot change its error handler is left as it is
            pass


def _error_line(line: str, exc: BaseException) -> None:
    """Print a command's error line: once per command, also when a launcher runs it as several processes.

    An error every process raised together is said by the main one; any other by the first process to
    fail (the others stay silent, see ``vlbench.distributed.claim_error_report``).
    """
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):  # started by torchrun / accelerate launch
        from vlbench import distributed

        together = distributed.world_size() > 1 and distributed.is_agreed(exc)
        if not (distributed.is_main() if together else distributed.claim_error_report()):
            return
    err_console.print(line, markup=False)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the CLI and return its exit code; user errors become one line on stderr and code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _escape_unprintable_output()
    try:
        _register_commands()
        # without standalone mode click returns the command's value, or the code of a typer.Exit it raised
        code = typer.main.get_command(app).main(args=args, prog_name="vlbench", standalone_mode=False)
    except _EXIT as exc:
        code = exc.exit_code
    except _ABORT as exc:
        if isinstance(exc.__cause__, EOFError):  # vlbench never prompts: an EOFError is a file ending early, not Ctrl-C
            if debug:
                traceback.print_exception(exc.__cause__)
            _error_line(f"error: unexpected EOFError: {exc.__cause__} (rerun with --debug for the traceback)", exc)
            return 1
        code = 130
    except _CLICK_ERROR as exc:
        # one line, like every other user error, instead of click's three-line usage block
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _error_line(f"error: {exc.format_message()}{where}", exc)
        return int(getattr(exc, "exit_code", 2) or 2)
    except VLBenchError as exc:
        if debug:
            traceback.print_exc()
        _error_line(f"error: {exc}", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            return _unexpected(exc, debug)
        # a name or path given by the user (a spec, a plugin, pretrained weights, a dataset folder) that the file
        # system cannot hold: bad input, whatever the code that first touched it
        if debug:
            traceback.print_exc()
        name = str(exc.filename or "")
        _error_line(f"error: a name or path is longer than the file system allows: {name[:60]!r}"
                    f"{'...' if len(name) > 60 else ''} ({len(os.fsencode(name))} bytes); shorten it.", exc)
        return 2
    except Exception as exc:  # noqa: BLE001  an unexpected bug still deserves a readable line
        return _unexpected(exc, debug)
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    if code == 130:  # typer turns Ctrl-C inside a command into Exit(130); say what survived
        err_console.print(INTERRUPTED, markup=False)
    return code


def _unexpected(exc: BaseException, debug: bool) -> int:
    """One readable line for an unexpected bug (the traceback with --debug); exit code 1."""
    if debug:
        traceback.print_exception(exc)
    _error_line(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", exc)
    return 1


def cli() -> None:
    """Console-script entry point."""
    code = main()
    if code == 130:
        # CPython re-kills itself with SIGINT at exit when a KeyboardInterrupt once left a C-level eval
        # (PyRun_*, as pybind11's py::exec uses), even though vlbench handled it; scripts must still see 130
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
