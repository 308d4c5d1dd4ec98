"""The one exception family: the core raises these, daemons count them, the CLI prints them."""


class SemnetError(Exception):
    """Base of every error semnet raises on purpose."""


class ConfigError(SemnetError):
    """A config file, flag or spec is invalid; the message names the key and the reason."""


class WireError(SemnetError):
    """A datagram is malformed. ``reason`` is a short slug used as a metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class ModelError(SemnetError):
    """A codec, checkpoint or zoo entry is missing or inconsistent."""
