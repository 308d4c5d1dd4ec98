"""`semnet ctl proxy show|set|reset|interface`: a running proxy's impairment and the bit
interface its access node protects, over its HTTP API."""

import json

import click

from semnet.cli.auth import key_option, load_key

DIRECTIONS = ("forward", "reverse")  # as semnet.daemons.proxy; not imported: it pulls aiohttp


def proxy_options(command):
    command = click.option(
        "--proxy",
        "proxy",
        default="127.0.0.1:7101",
        show_default=True,
        help="host:port of the proxy's HTTP port",
    )(command)
    command = key_option(command)
    return click.option("--json", "as_json", is_flag=True, help="print the proxy's JSON answer")(
        command
    )


def call(
    proxy: str, key_file: str | None, path: str, body: dict | None = None, method: str = "GET"
) -> dict:
    """One request to the proxy; its answer is the state of both directions."""
    from semnet.client import request
    from semnet.daemons.net import format_address, parse_address

    url = f"http://{format_address(parse_address(proxy, '--proxy'))}{path}"
    data = None if body is None else json.dumps(body).encode()
    return request(url, data, method, timeout=10.0, key=load_key(key_file))


def echo(state: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(state, indent=1))
        return
    for name, d in state.items():
        model = f"replay {d['replay']}" if d.get("replay") else d.get("spec") or "(none)"
        click.echo(f"{name:<8} {model}   [{d['changes']} changes]")


@click.group()
def ctl() -> None:
    """Control running daemons."""


@ctl.group("proxy")
def proxy_group() -> None:
    """Show or change a running proxy's impairment; a change applies from the next datagram."""


@proxy_group.command()
@proxy_options
def show(proxy: str, auth_key_file: str | None, as_json: bool) -> None:
    """Print both directions' impairment."""
    echo(call(proxy, auth_key_file, "/impairment"), as_json)


@proxy_group.command("set")
@click.argument("spec")
@click.option("--direction", type=click.Choice(DIRECTIONS), default="forward", show_default=True)
@click.option(
    "--merge",
    is_flag=True,
    help="change only the options SPEC names, keep the others (PATCH instead of PUT)",
)
@proxy_options
def set_spec(
    spec: str, direction: str, merge: bool, proxy: str, auth_key_file: str | None, as_json: bool
) -> None:
    """Impair one direction with exactly SPEC (netem syntax; "" for none). `seed N` in SPEC
    restarts the model from that seed; without it the random stream carries on, as
    `tc qdisc change`. An invalid SPEC changes nothing (exit code 2)."""
    method = "PATCH" if merge else "PUT"
    echo(call(proxy, auth_key_file, "/impairment", {direction: spec}, method), as_json)


@proxy_group.command()
@proxy_options
def reset(proxy: str, auth_key_file: str | None, as_json: bool) -> None:
    """Restore both directions' configured impairment, restarted from its seed (or the replay
    from its first record)."""
    echo(call(proxy, auth_key_file, "/impairment/reset", {}, "POST"), as_json)


@proxy_group.group("interface")
def interface_group() -> None:
    """The bit interface (paper 003) a `link ... errors bits` stage protects."""


@interface_group.command("set")
@click.argument("file", type=click.Path(dir_okay=False))
@proxy_options
def interface_set(file: str, proxy: str, auth_key_file: str | None, as_json: bool) -> None:
    """Give the proxy FILE (semnet-interface/1, e.g. `semnet zoo show NAME --interface --json`),
    checked here and there: a wrong length or an eps outside [0, 0.5] changes nothing."""
    from semnet.core.interface import load

    iface = load(file)
    echo_interface(call(proxy, auth_key_file, "/interface", iface.as_dict(), "PUT"), as_json)


@interface_group.command("show")
@proxy_options
def interface_show(proxy: str, auth_key_file: str | None, as_json: bool) -> None:
    """Print the proxy's interface and the flip probability its node gives each class."""
    echo_interface(call(proxy, auth_key_file, "/interface"), as_json)


def echo_interface(state: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(state, indent=1))
        return
    iface = state.get("interface")
    if iface is None:
        click.echo("interface (none)")
    else:
        click.echo(f"interface {iface['channels']} channels x {iface['bits']} bits")
    for name in DIRECTIONS:
        if name in state:
            flips = " ".join(f"{p:.3g}" for p in state[name]["class_flip"])
            click.echo(f"{name:<8} flip probability by class (MSB first): {flips}")


COMMANDS = (ctl,)
