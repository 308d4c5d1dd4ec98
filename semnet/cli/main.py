"""The `semnet` command: daemons, send, demo, train, zoo. Heavy imports happen inside commands,
so `semnet proxy` never loads torch."""

import logging
import sys

import click

from semnet.errors import SemnetError


class Group(click.Group):
    """Turns SemnetErrors (user mistakes, dead peers) into one line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SemnetError as exc:
            click.echo(f"semnet: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=Group)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--zoo",
    "zoos",
    multiple=True,
    type=click.Path(exists=True),
    help="a zoo folder or manifest searched first, for every command and the daemons it starts "
    "(repeatable; adds to $SEMNET_ZOO)",
)
@click.version_option(package_name="semnet")
def cli(log_level: str, zoos: tuple[str, ...]) -> None:
    """Semantic image communication over lossy packet networks: a testbed."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if zoos:
        from semnet.models import zoopath  # no torch: `semnet --zoo D proxy` stays light

        zoopath.use(zoos, "--zoo")


def main() -> None:
    """Every module in semnet.cli that defines COMMANDS contributes them, so a new command needs
    no edit here."""
    import importlib
    import pkgutil

    import semnet.cli

    for info in sorted(pkgutil.iter_modules(semnet.cli.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"semnet.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)
    cli(prog_name="semnet")
