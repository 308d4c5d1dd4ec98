"""`--zoo DIR` for the commands that take `--codec`: one zoo folder or manifest searched before
the built-in zoo (more than one: `semnet --zoo A --zoo B COMMAND`, or SEMNET_ZOO)."""

import click

zoo_option = click.option(
    "--zoo",
    "zoo_path",
    default=None,
    type=click.Path(exists=True),
    help="a zoo folder or manifest searched first (more: semnet --zoo DIR ...)",
)


def use_zoo(zoo_path: str | None) -> None:
    """Search ``zoo_path`` first, here and in the daemons this command starts."""
    from semnet.models import zoopath

    zoopath.use([zoo_path] if zoo_path else [], "--zoo")
