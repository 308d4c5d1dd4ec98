"""The client side of authentication: where `semnet send` and `semnet ctl` find the shared key
when the daemons have one (the same key file their configs name)."""

import click


def key_option(command):
    return click.option(
        "--auth-key-file",
        envvar="SEMNET_AUTH_KEY_FILE",
        type=click.Path(dir_okay=False),
        help="shared key file, when the daemons authenticate (also $SEMNET_AUTH_KEY_FILE)",
    )(command)


def load_key(path: str | None) -> bytes | None:
    """The key bytes, or None for unauthenticated daemons; errors name the file, never the key."""
    from semnet.daemons.config import AuthKeys

    return AuthKeys(auth_key_file=path).load_auth_key() if path else None
