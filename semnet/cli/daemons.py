"""`semnet sender|proxy|receiver --config FILE`: run one daemon until Ctrl-C."""

import click

from semnet.daemons.config import ProxyConfig, ReceiverConfig, SenderConfig, load_config
from semnet.daemons.service import run

auth_option = click.option(
    "--auth-key-file", help="shared key: authenticate datagrams and control requests"
)
config_option = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    help="YAML config; flags override its keys",
)
zoo_option = click.option(
    "--zoo",
    multiple=True,
    type=click.Path(exists=True),
    help="zoo folder or manifest searched before the built-in zoo (repeatable; replaces the "
    "config's zoo: list); sender and receiver need the same",
)


def given(flags: dict) -> dict:
    """Flags as config overrides: a repeatable option given no value overrides nothing."""
    return {k: (v or None) if isinstance(v, tuple) else v for k, v in flags.items()}


@click.command()
@config_option
@auth_option
@click.option("--http", help="host:port for `semnet send` and /metrics")
@click.option("--data-to", help="host:port the datagrams go to (the proxy)")
@click.option("--receiver-http", help="host:port of the receiver's side channel")
@click.option(
    "--codec",
    help="zoo codec name or manifest path (with --quality or --bpp: a family, e.g. cnn-rd)",
)
@zoo_option
@click.option("--quality", type=int, help="rate point N of the family (its -qN entry)")
@click.option("--bpp", type=float, help="the best rate point at most this many bits per pixel")
@click.option("--partition", help="channel | spatial | token | intra-token | patch[:AxB]")
@click.option("--interleave/--no-interleave", default=None)
@click.option(
    "--importance/--no-importance",
    default=None,
    help="CAM importance per datagram, for semantic-aware power allocation in the proxy",
)
@click.option(
    "--planes/--no-planes",
    default=None,
    help="bit-planes apart, one importance class per datagram (a proxy's `errors bits` link)",
)
@click.option(
    "--payload-check/--no-payload-check",
    default=None,
    help="whether the crc covers the payload (off: flipped bits reach the decoder; planes only)",
)
@click.option("--seed", type=int)
def sender(config: str | None, **flags) -> None:
    """Encode images handed over by `semnet send` and send them as datagrams."""
    from semnet.daemons import sender as daemon

    cfg = load_config(SenderConfig, config, given(flags))
    run(lambda stop: daemon.serve(cfg, stop))


@click.command()
@config_option
@auth_option
@click.option("--listen", help="host:port to receive datagrams on")
@click.option("--forward", help="host:port to forward datagrams to")
@click.option("--http", help="host:port for run-time control and /metrics")
@click.option("--impair", help='netem spec for the data direction, e.g. "loss random 10%"')
@click.option("--reverse", help="netem spec for the reverse (feedback) direction")
@click.option(
    "--seed", type=int, help="one seed drives every random choice (a spec's `seed N` wins)"
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False),
    help="write each forward datagram's fate to this trace file",
)
@click.option(
    "--replay",
    type=click.Path(dir_okay=False),
    help="forward direction: apply this fate or 0/1 trace instead of --impair",
)
@click.option(
    "--interface",
    type=click.Path(dir_okay=False),
    help="the bit interface a `link ... errors bits` stage protects (semnet-interface/1 JSON)",
)
def proxy(config: str | None, **flags) -> None:
    """Forward datagrams through netem-style impairments.

    Datagrams from any peer go through the forward impairment to --forward; datagrams coming
    back from --forward go through the reverse one to the last peer. --record and --replay
    apply to the forward (data) direction only. Change it while running: `semnet ctl proxy`.
    """
    from semnet.daemons import proxy as daemon

    cfg = load_config(ProxyConfig, config, flags)
    run(lambda stop: daemon.serve(cfg, stop))


@click.command()
@config_option
@auth_option
@click.option("--listen", help="host:port to receive datagrams on")
@click.option("--http", help="host:port for the reference channel and /metrics")
@click.option("--fill", help="zero | mean | f0 | diffusion[:T[:τ]] (default T 10, τ 0)")
@click.option("--output", help="folder for reconstructed images")
@click.option("--deadline", type=float, help="seconds after a frame's first datagram")
@zoo_option
def receiver(config: str | None, **flags) -> None:
    """Reassemble, fill, decode and score frames; export metrics."""
    from semnet.daemons import receiver as daemon

    cfg = load_config(ReceiverConfig, config, given(flags))
    run(lambda stop: daemon.serve(cfg, stop))


COMMANDS = (sender, proxy, receiver)
