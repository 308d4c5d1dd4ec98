"""Where zoos are: the ``SEMNET_ZOO`` path list, without torch (the CLI and configs use it).

``SEMNET_ZOO`` holds zoo folders (the manifest + safetensors layout of ``semnet/zoo/``) and
single manifest files, separated by ``os.pathsep``; they are searched in order, before the zoos
of plug-ins and the built-in zoo (``semnet.models.zoo.zoos``). ``--zoo DIR``, a daemon config's
``zoo:`` and a manifest path given as a codec name all go through :func:`use`, which puts the
paths first in this process's ``SEMNET_ZOO``, so the daemons it starts see them too.
"""

import os
from collections.abc import Iterable
from pathlib import Path

from semnet.errors import ConfigError

ENV = "SEMNET_ZOO"


def parse(value: str) -> tuple[Path, ...]:
    """The paths of a SEMNET_ZOO value (empty items skipped, ``~`` expanded), in order."""
    return tuple(Path(p).expanduser() for p in value.split(os.pathsep) if p.strip())


def paths() -> tuple[Path, ...]:
    """This process's SEMNET_ZOO."""
    return parse(os.environ.get(ENV, ""))


def is_manifest(name: str) -> bool:
    """Whether a codec name is a path to one manifest (``path/to/name.json``) instead."""
    return name.endswith(".json")


def as_list(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """A config's ``zoo:`` (one path or a list of them) as a tuple."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def check(path: str | Path, key: str = "zoo") -> Path:
    """A zoo folder or a manifest file that exists, as an absolute path; ConfigError naming
    ``key`` (when given) otherwise."""
    p = Path(path).expanduser()
    if p.is_dir() or (p.is_file() and is_manifest(p.name)):
        return p.resolve()
    where = f"{key}: " if key else ""
    if p.exists():
        raise ConfigError(f"{where}{path} is neither a zoo folder nor a .json manifest")
    raise ConfigError(f"{where}{path} does not exist")


def check_all(value: str | Iterable[str] | None) -> None:
    """A config's ``zoo:`` value: every path exists (ConfigError naming the first that does not)."""
    for p in as_list(value):
        check(p, "")


def use(items: Iterable[str | Path], key: str = "zoo") -> None:
    """Search these zoos first, in the order given, in this process and the processes it
    starts (they go to the front of SEMNET_ZOO, as absolute paths, once each)."""
    new = [check(p, key) for p in items]
    if not new:
        return
    rest = [p for p in paths() if p.resolve() not in new]
    os.environ[ENV] = os.pathsep.join(str(p) for p in [*new, *rest])
