"""The impairment from a YAML mapping, validated like the netem string.

Each top-level key is a netem option. Its value is either a netem fragment string
(``loss: "gemodel 1% 30%"``) or a mapping with named fields::

    limit: 1000
    delay: {time: 20ms, jitter: 5ms, correlation: 25%, distribution: normal, inorder: false}
    loss: {gemodel: {p: 1%, r: 30%, 1-h: 100%, 1-k: 0%}}   # or random / state / burst
    duplicate: {percent: 1%, correlation: 0%}
    corrupt: {percent: 0.1%}
    reorder: {percent: 25%, correlation: 50%, gap: 5}
    rate: {rate: 10mbit, packet_overhead: 28, cell_size: 0, cell_overhead: 0}
    slot: {min: 800us, max: 1ms, packets: 10, bytes: 64k}   # or distribution/delay/jitter
    seed: 42
    link: {channel: rayleigh, snr: 10dB, blocklength: 1024, coderate: 0.4375,
           subcarriers: 16, power: semantic}                # semnet: docs/wireless.md

Numbers are read as tc reads the same word (``1`` = 1%), except that a time must carry a unit
unless it is 0: YAML users rarely mean tc's bare nanoseconds.
"""

from __future__ import annotations

from collections.abc import Mapping

from semnet.core.impair.netem import (
    assemble,
    format_spec,
    link_from_words,
    netem_words,
    parse_options,
)
from semnet.core.impair.spec import (
    S32_MAX,
    Chance,
    ImpairSpec,
    Link,
    Loss,
    LossBurst,
    LossGemodel,
    LossState,
    Rate,
    Slot,
)
from semnet.core.impair.units import (
    U32_MAX,
    format_number,
    parse_int,
    parse_number,
    parse_percent,
    parse_rate,
    parse_size,
    parse_time,
)
from semnet.errors import ConfigError

# options a fragment for the key may also set (tc spells them as separate keywords)
_FRAGMENT_EXTRAS = {"delay": {"distribution", "inorder"}, "reorder": {"gap"}}
# what a patch of the key replaces
_GROUPS = {key: (key, *sorted(extras)) for key, extras in _FRAGMENT_EXTRAS.items()}


def _word(where: str, value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_number(value) if isinstance(value, float) else str(value)
    raise ConfigError(f"{where}: {value!r} is not a number or a string")


def _fields(where: str, data: object, allowed: tuple[str, ...], required: int = 0) -> dict:
    """The mapping's items, refusing unknown keys and missing required ones (the first N)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r} (expected {', '.join(allowed)})")
    for key in allowed[:required]:
        if key not in data:
            raise ConfigError(f"{where}: missing key {key!r}")
    return dict(data)


def _percent(where: str, data: dict, key: str, default: float) -> float:
    return (
        parse_percent(_word(f"{where}.{key}", data[key]), f"{where}.{key}")
        if key in data
        else default
    )


def _time(where: str, value: object) -> int:
    word = _word(where, value)
    ns = parse_time(word, where)
    if ns and not word[-1:].isalpha():
        raise ConfigError(f"{where}: {value!r} needs a unit (e.g. '20ms')")
    return ns


def _int(where: str, value: object, lo: int, hi: int) -> int:
    return parse_int(_word(where, value), where, lo, hi)


def _chance(where: str, data: object) -> Chance:
    fields = _fields(where, data, ("percent", "correlation"), required=1)
    return Chance(
        _percent(where, fields, "percent", 0.0), _percent(where, fields, "correlation", 0.0)
    )


def _loss(data: object) -> Loss:
    where = "loss"
    models = _fields(where, data, ("random", "state", "gemodel", "burst"))
    if len(models) != 1:
        raise ConfigError(f"{where}: give exactly one of random, state, gemodel, burst")
    ((model, body),) = models.items()
    where = f"loss.{model}"
    if model == "random":
        return _chance(where, body)
    if model == "state":
        f = _fields(where, body, ("p13", "p31", "p32", "p23", "p14"), required=1)
        p13 = _percent(where, f, "p13", 0.0)
        return LossState(
            p13,
            _percent(where, f, "p31", 100.0 - p13),
            _percent(where, f, "p32", 0.0),
            _percent(where, f, "p23", 100.0),
            _percent(where, f, "p14", 0.0),
        )
    if model == "gemodel":
        f = _fields(where, body, ("p", "r", "1-h", "1-k"), required=1)
        p = _percent(where, f, "p", 0.0)
        return LossGemodel(
            p,
            _percent(where, f, "r", 100.0 - p),
            _percent(where, f, "1-h", 100.0),
            _percent(where, f, "1-k", 0.0),
        )
    f = _fields(where, body, ("rate", "length", "max"), required=2)
    length = parse_number(_word(f"{where}.length", f["length"]), f"{where}.length")
    cap = _int(f"{where}.max", f["max"], 1, S32_MAX) if "max" in f else 0
    return LossBurst(_percent(where, f, "rate", 0.0), length, cap)


def _delay(found: dict[str, object], data: object) -> None:
    where = "delay"
    keys = ("time", "jitter", "correlation", "distribution", "inorder")
    f = _fields(where, data, keys, required=1)
    jitter = _time(f"{where}.jitter", f["jitter"]) if "jitter" in f else 0
    found["delay"] = (
        _time(f"{where}.time", f["time"]),
        jitter,
        _percent(where, f, "correlation", 0.0),
    )
    if "distribution" in f:
        found["distribution"] = _word(f"{where}.distribution", f["distribution"])
    inorder = f.get("inorder", False)
    if not isinstance(inorder, bool):
        raise ConfigError(f"{where}.inorder: {inorder!r} is not true or false")
    if inorder:
        found["inorder"] = True


def _reorder(found: dict[str, object], data: object) -> None:
    where = "reorder"
    f = _fields(where, data, ("percent", "correlation", "gap"), required=1)
    found["reorder"] = _chance(where, {k: v for k, v in f.items() if k != "gap"})
    if "gap" in f:
        found["gap"] = _int(f"{where}.gap", f["gap"], 0, U32_MAX)


def _rate(data: object) -> Rate:
    where = "rate"
    keys = ("rate", "packet_overhead", "cell_size", "cell_overhead")
    f = _fields(where, data, keys, required=1)
    s32 = (-S32_MAX - 1, S32_MAX)
    return Rate(
        parse_rate(_word(f"{where}.rate", f["rate"]), f"{where}.rate"),
        _int(f"{where}.packet_overhead", f.get("packet_overhead", 0), *s32),
        _int(f"{where}.cell_size", f.get("cell_size", 0), 0, U32_MAX),
        _int(f"{where}.cell_overhead", f.get("cell_overhead", 0), *s32),
    )


def _slot(data: object) -> Slot:
    where = "slot"
    keys = ("min", "max", "distribution", "delay", "jitter", "packets", "bytes")
    f = _fields(where, data, keys)
    times = {k: _time(f"{where}.{k}", f[k]) for k in ("min", "max", "delay", "jitter") if k in f}
    low = times.get("min", 0)
    size = parse_size(_word(f"{where}.bytes", f["bytes"]), f"{where}.bytes") if "bytes" in f else 0
    return Slot(
        min_ns=low,
        max_ns=times.get("max", low),
        distribution=_word(f"{where}.distribution", f["distribution"])
        if "distribution" in f
        else None,
        delay_ns=times.get("delay", 0),
        jitter_ns=times.get("jitter", 0),
        packets=_int(f"{where}.packets", f.get("packets", 0), 0, S32_MAX),
        bytes=size,
    )


def _link(data: object) -> Link:
    where = "link"
    keys = ("channel", "snr", "blocklength", "coderate", "subcarriers", "power", "errors")
    keys += ("allocation", "modulation")
    f = _fields(where, data, keys, required=2)
    params = {k: _word(f"{where}.{k}", v) for k, v in f.items() if k != "channel"}
    return link_from_words(_word(f"{where}.channel", f["channel"]), params, where)


_BUILDERS = {
    "loss": _loss,
    "duplicate": lambda data: _chance("duplicate", data),
    "corrupt": lambda data: _chance("corrupt", data),
    "rate": _rate,
    "slot": _slot,
    "link": _link,
}
_KEYS = (
    "limit",
    "delay",
    "loss",
    "duplicate",
    "corrupt",
    "reorder",
    "rate",
    "slot",
    "seed",
    "link",
)


def spec_from_mapping(data: Mapping) -> ImpairSpec:
    """Build the spec from a YAML mapping; ConfigError names any unknown or invalid key."""
    return assemble(options_from_mapping(data))


def patch_spec(spec: ImpairSpec, patch: str | Mapping) -> ImpairSpec:
    """``spec`` with the options ``patch`` names replaced and the others kept (PATCH).

    ``patch`` is a netem string or a mapping, where ``null`` removes an option (JSON merge
    patch). ``delay`` replaces its distribution and ``inorder`` too, ``reorder`` its ``gap``.
    ``seed N`` asks for a restart rather than describing state, so the result has a seed only
    when the patch names one. The result is checked as a whole spec.
    """
    found = parse_options(format_spec(spec).split())
    found.pop("seed", None)
    if isinstance(patch, str):
        part, removed = parse_options(netem_words(patch)), []
    else:
        fields = _fields("impairment", patch, _KEYS)
        removed = [key for key, value in fields.items() if value is None]
        part = options_from_mapping({k: v for k, v in fields.items() if v is not None})
    for option in (*part, *removed):
        for name in _GROUPS.get(option, (option,)):
            found.pop(name, None)
    found.update(part)
    return assemble(found)


def options_from_mapping(data: Mapping) -> dict[str, object]:
    """Each option's parsed value, as :func:`~semnet.core.impair.netem.parse_options` gives."""
    found: dict[str, object] = {}
    for key, value in _fields("impairment", data, _KEYS).items():
        if key == "limit":
            found[key] = parse_size(_word(key, value), key)
        elif key == "seed":
            found[key] = _int(key, value, 0, 2**64 - 1)
        elif not isinstance(value, str | Mapping):
            raise ConfigError(f"{key}: expected a mapping or a netem string, got {value!r}")
        elif isinstance(value, str):
            part = parse_options([key, *value.split()])
            extra = set(part) - {key} - _FRAGMENT_EXTRAS.get(key, set())
            if extra:
                raise ConfigError(f"{key}: {value!r} also sets {', '.join(sorted(extra))}")
            found.update(part)
        elif key == "delay":
            _delay(found, value)
        elif key == "reorder":
            _reorder(found, value)
        else:
            found[key] = _BUILDERS[key](value)
    return found
