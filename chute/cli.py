"""The ``chute`` command line (Typer).

Each command imports what it needs inside its body, so that a command only
pays for its own dependencies. ``chute blubber`` does not even come here in the
common case: see :mod:`chute.entry`.
"""

from __future__ import annotations

import sys

import typer

from chute import __version__

app = typer.Typer(
    name="chute",
    help="A self-service deployment pipeline: build, test, publish and deploy from .pipeline/ files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(err: BaseException) -> typer.Exit:
    """Print a ConfigError to stderr and turn it into its exit code."""
    from chute.config import ConfigError

    if isinstance(err, ConfigError):
        sys.stderr.write(err.format() + "\n")
        return typer.Exit(err.exit_code)
    raise err


@app.command()
def blubber(
    config: str = typer.Argument(..., help="Path to a Blubber config (.pipeline/blubber.yaml)."),
    variant: str = typer.Argument(..., help="The variant to compile."),
    policy: str | None = typer.Option(None, "--policy", "-p", help="Policy file path or http(s) URL."),
) -> None:
    """Print the Dockerfile for VARIANT of a Blubber config."""
    from chute.entry import blubber_main

    code = blubber_main(config, variant, policy)
    if code:
        raise typer.Exit(code)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"chute {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """chute: Blubber images, PipelineLib pipelines, continuous deployment and delivery metrics."""


def main(argv: list[str] | None = None) -> None:
    """Run the app; usage errors exit 1 (Blubber's convention), not click's 2."""
    try:
        code = app(args=list(sys.argv[1:] if argv is None else argv), prog_name="chute",
                   standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        raise SystemExit(130) from None
    except Exception as err:
        # Typer vendors click; its UsageError is not public, so recognise it by shape.
        if any(c.__name__ == "UsageError" for c in type(err).__mro__) and hasattr(err, "show"):
            err.show()
            raise SystemExit(1) from None
        raise
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
