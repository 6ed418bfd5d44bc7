"""The ``tegata`` command: one error hook, then the sub-commands."""

from __future__ import annotations

import sys
import traceback

import typer

from ca import errors
from cli import commands
from cli.context import STATE
from cli.errors import INTERNAL, exit_code
from cli.errors import message as error_line
from cli.output import check_arguments, shown

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Tegata: a private CA for per-user client certificates.")
commands.register(app)

@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")
          ) -> None:
    STATE.debug = debug


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a domain error or a usage error becomes one line on stderr and a non-zero
    exit (user strings in it escaped and cut short)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        check_arguments(args)
        code = app(args=args, prog_name="tegata", standalone_mode=False)
    except errors.CAError as exc:
        if STATE.debug:
            traceback.print_exc()
        _error(error_line(exc))
        sys.exit(exit_code(exc))
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        message = exc.format_message()
        if not message.strip():  # a command group called bare: typer printed its help
            pass
        elif "\n" in message:
            sys.stderr.write(message.rstrip("\n") + "\n")
        else:
            ctx = getattr(exc, "ctx", None)
            path = getattr(ctx, "command_path", "tegata") or "tegata"
            _error(f"{message} (see '{shown(path, 80)} --help')")
        sys.exit(getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("tegata: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if STATE.debug:
            traceback.print_exc()
        # the message of an unexpected error may hold anything: show only its type
        sys.stderr.write(f"tegata: internal error ({type(exc).__name__}); run with --debug "
                         "for details\n")
        sys.exit(INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)


def _error(message: str) -> None:
    sys.stderr.write(f"tegata: error: {shown(message, 500)}\n")


if __name__ == "__main__":
    main()
