"""``tulle validate``: check a configuration and say what is wrong, all at once.

With ``--show`` it prints the effective configuration (every default filled in) as
YAML, which is what the proxy will run with; ``/config`` on the admin port shows the
same document.
"""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from tulle.config import ConfigError, load


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--show", is_flag=True, help="Print the effective configuration as YAML.")
def validate(path: Path, show: bool) -> None:
    """Check the manifests at PATH (a file, or a folder searched recursively)."""
    try:
        config = load(path)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        files = {str(problem.file) for problem in error.problems}
        click.echo(
            f"✗ {_count(len(error.problems), 'problem')} in {_count(len(files), 'file')}",
            err=True,
        )
        raise SystemExit(1) from None
    if show:
        click.echo(yaml.dump(config.to_dict(), Dumper=yaml.CSafeDumper, sort_keys=False), nl=False)
        return
    click.echo(
        f"✓ {_count(len(config.services), 'service')}, {_count(len(config.routes), 'route')} "
        f"from {_count(len(config.sources), 'file')}"
    )
