"""The ``tegata`` command: one error hook, then the sub-commands."""

from __future__ import annotations

import sys
import traceback

import typer

from ca import errors
from cli import commands
from cli.context import STATE

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Tegata: a private CA for per-user client certificates.")
commands.register(app)

EXIT = {
    errors.InvalidInput: 2,
    errors.ConfigError: 78,  # EX_CONFIG
    errors.StorageError: 69,  # EX_UNAVAILABLE
}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")
          ) -> None:
    STATE.debug = debug


def exit_code(exc: errors.CAError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT:
            return EXIT[cls]
    return 1


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a domain error becomes one line on stderr and a non-zero exit."""
    try:
        app(args=argv, prog_name="tegata")
    except errors.CAError as exc:
        if STATE.debug:
            traceback.print_exc()
        sys.stderr.write(f"tegata: error: {exc.message}\n")
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        sys.stderr.write("tegata: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if STATE.debug:
            traceback.print_exc()
        # the message of an unexpected error may hold anything: show only its type
        sys.stderr.write(f"tegata: internal error ({type(exc).__name__}); run with --debug "
                         "for details\n")
        sys.exit(70)


if __name__ == "__main__":
    main()
