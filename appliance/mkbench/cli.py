"""The `mkbench` command: parse options, call one library function, print.

No logic lives here. Each area has its group; a command prints a table by default and
JSON with --json where a machine reads it.
"""

from __future__ import annotations

import json
import sys

import click

from . import __version__


def fail(message: str) -> None:
    """Stop with a one-line error (exit 2), the way every command reports bad input."""
    click.echo(f"mkbench: {message}", err=True)
    sys.exit(2)


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


@click.group()
@click.version_option(__version__, prog_name="mkbench")
def main() -> None:
    """MobileKernelBench: judge LLM-written MNN CPU kernels on phones, and MoKA, the agent that writes them."""


# ---------------------------------------------------------------- doctor
@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def doctor(as_json: bool) -> None:
    """What is present and what is missing, one line each."""
    from .doctor import run_checks

    checks = run_checks()
    if as_json:
        echo_json([c.__dict__ for c in checks])
        return
    for c in checks:
        click.echo(f"{'ok  ' if c.ok else 'MISS'}  {c.name:<28} {c.detail}")


# ---------------------------------------------------------------- tasks
@main.group()
def tasks() -> None:
    """The task suite: list, show, validate, import."""


# ---------------------------------------------------------------- mnn
@main.group()
def mnn() -> None:
    """The pinned MNN tree and its builds."""


# ---------------------------------------------------------------- devices
@main.group(invoke_without_command=True)
@click.pass_context
def devices(ctx: click.Context) -> None:
    """Phones over adb, the emulator and the host."""


# ---------------------------------------------------------------- models
@main.group()
def models() -> None:
    """Local GGUF models: install, list, add."""


# ---------------------------------------------------------------- run / report / export
@main.group()
def run() -> None:
    """Runs of generators over tasks and devices."""


@main.command()
def report() -> None:
    """The paper's metrics for a run."""
    fail("report is not built yet")


@main.command()
def export() -> None:
    """Export a run's attempts and LLM calls as CSV."""
    fail("export is not built yet")


if __name__ == "__main__":
    main()
