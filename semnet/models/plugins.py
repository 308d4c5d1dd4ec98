"""Codec plug-ins: installed packages that add architectures and zoos through entry points.

Two entry-point groups (declared in the plug-in's pyproject.toml, docs/plugins.md):

* ``semnet.codecs``: the entry point's name is an architecture name (what a model config's
  ``architecture:`` and a manifest's ``architecture`` say), its object a ``Codec`` subclass or a
  function of the ``params`` returning a ``Codec``;
* ``semnet.zoos``: the name is a label, the object a zoo folder (a path, or a function without
  arguments returning one) laid out as ``semnet/zoo/``, searched after SEMNET_ZOO and before
  the built-in zoo.

Every semnet process (CLI, sweeps, the three daemons, daemons started by tests) finds them in
the installed packages' metadata: nothing is patched in. Each group is read once per process,
on first use. A plug-in that fails to load is reported once (a warning naming it, its package
and its error) and left out, so the rest of semnet keeps working; a name that two plug-ins
claim is used by neither, and asking for it is an error naming both.
"""

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

CODECS = "semnet.codecs"
ZOOS = "semnet.zoos"
log = logging.getLogger("semnet.plugins")


@dataclass(frozen=True)
class Plugin:
    """One entry point, as its package declares it."""

    name: str
    value: str  # module:object
    package: str  # the distribution that declares it
    version: str

    def __str__(self) -> str:
        return f"{self.package} {self.version} ({self.value})"


@dataclass(frozen=True)
class Loaded:
    """A plug-in's object, or why it cannot be used (then ``obj`` is None)."""

    plugin: Plugin
    obj: Any = None
    error: str | None = None


def declared(group: str) -> list[tuple[Plugin, Callable[[], Any]]]:
    """The group's entry points in the installed packages, each with its loader."""
    out = []
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        package = dist.name if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        out.append((Plugin(ep.name, ep.value, package, version), ep.load))
    return out


def _claimants(plugins: list[Plugin]) -> str:
    names = [str(p) for p in plugins]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _discover(
    group: str, check: Callable[[Any], Any], reserved: frozenset[str] = frozenset()
) -> dict[str, Loaded]:
    """Load a group's plug-ins: name -> Loaded. ``check`` turns a loaded object into what is
    kept, raising ValueError when it is not usable; ``reserved`` names are semnet's own."""
    by_name: dict[str, list[tuple[Plugin, Callable[[], Any]]]] = {}
    for plugin, loader in declared(group):
        claims = by_name.setdefault(plugin.name, [])
        if all(p != plugin for p, _ in claims):  # one package seen twice on the path
            claims.append((plugin, loader))
    found: dict[str, Loaded] = {}
    for name, claims in sorted(by_name.items()):
        plugin, loader = claims[0]
        if len(claims) > 1:
            why = (
                f"{group} {name!r} is claimed by {len(claims)} plug-ins: "
                f"{_claimants([p for p, _ in claims])}; uninstall all but one"
            )
        elif name in reserved:
            why = f"plug-in {plugin} claims {name!r}, which is built into semnet: ignored"
        else:
            try:
                found[name] = Loaded(plugin, check(loader()))
                continue
            except Exception as exc:  # a plug-in's import may raise anything
                why = f"plug-in {name!r} from {plugin} failed to load: {type(exc).__name__}: {exc}"
        log.warning("%s", why)
        found[name] = Loaded(plugin, error=why)
    return found


def _architecture(obj: Any) -> Callable[..., Any]:
    if not callable(obj):
        raise ValueError(f"{type(obj).__name__} is not a Codec class or a function")
    return obj


def _zoo(obj: Any) -> Path:
    if callable(obj):
        obj = obj()
    try:
        folder = Path(obj)
    except TypeError:
        raise ValueError(f"{type(obj).__name__} is not a zoo folder path") from None
    if not folder.is_dir():
        raise ValueError(f"zoo folder {folder} does not exist")
    return folder.resolve()


@functools.cache
def codecs(reserved: frozenset[str] = frozenset()) -> dict[str, Loaded]:
    """The architectures plug-ins add, by name (read once per process)."""
    return _discover(CODECS, _architecture, reserved)


@functools.cache
def zoos() -> dict[str, Loaded]:
    """The zoo folders plug-ins ship, by label (read once per process)."""
    return _discover(ZOOS, _zoo)


def forget() -> None:
    """Read the entry points again on next use (tests)."""
    codecs.cache_clear()
    zoos.cache_clear()
