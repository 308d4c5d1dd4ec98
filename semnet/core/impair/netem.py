"""tc-netem option strings to :class:`ImpairSpec` and back.

The grammar is iproute2's q_netem.c: keywords may be abbreviated as tc's ``matches()`` allows
(first match in tc's order, so ``del`` is delay and ``d`` too), an optional numeric argument is
taken only when the next token starts with a digit, and omitted model parameters get tc's
defaults. A full ``tc qdisc add dev eth0 root netem ...`` line is accepted: everything up to
``netem`` is skipped. semnet adds ``loss burst`` and ``inorder``, refuses ``ecn``, and refuses
a keyword given twice (tc keeps the last).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace

from semnet.core.impair.spec import (
    BITS_ONLY,
    DEFAULT_LIMIT,
    DISTRIBUTIONS,
    LINK_CHANNELS,
    PACKET_ONLY,
    S32_MAX,
    Chance,
    Delay,
    ImpairSpec,
    Link,
    Loss,
    LossBurst,
    LossGemodel,
    LossState,
    Rate,
    Reorder,
    Slot,
)
from semnet.core.impair.units import (
    U32_MAX,
    format_number,
    format_percent,
    format_rate,
    format_time,
    parse_int,
    parse_number,
    parse_percent,
    parse_rate,
    parse_size,
    parse_time,
    starts_like_number,
)
from semnet.errors import ConfigError

# tc's keyword order decides what an abbreviation means; aliases map to one option name.
_KEYWORDS = (
    ("limit", "limit"),
    ("latency", "delay"),
    ("delay", "delay"),
    ("loss", "loss"),
    ("drop", "loss"),
    ("ecn", "ecn"),
    ("reorder", "reorder"),
    ("corrupt", "corrupt"),
    ("gap", "gap"),
    ("duplicate", "duplicate"),
    ("distribution", "distribution"),
    ("rate", "rate"),
    ("slot", "slot"),
    ("seed", "seed"),
)
_SEMNET_KEYWORDS = ("inorder", "link")  # exact spelling only
# link's parameters, exact spelling; "coderate", not "rate", which is netem's own option
_LINK_PARAMS = (
    "snr",
    "blocklength",
    "coderate",
    "subcarriers",
    "power",
    "errors",
    "allocation",
    "modulation",
)
_DB = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(db)?\Z", re.IGNORECASE)


class _Tokens:
    """A cursor over the option words with tc's look-ahead rules."""

    def __init__(self, words: list[str]) -> None:
        self._words = words
        self._i = 0

    def __bool__(self) -> bool:
        return self._i < len(self._words)

    def take(self, where: str) -> str:
        if self._i >= len(self._words):
            raise ConfigError(f"{where}: missing value")
        word = self._words[self._i]
        self._i += 1
        return word

    def peek(self) -> str | None:
        return self._words[self._i] if self._i < len(self._words) else None

    def take_number(self, signed: bool = False) -> str | None:
        """The next word if it starts like a number (tc's NEXT_IS_NUMBER / _SIGNED_NUMBER)."""
        if self._i < len(self._words):
            word = self._words[self._i]
            if starts_like_number(word) or (signed and word[:1] == "-"):
                self._i += 1
                return word
        return None

    def take_keyword(self, keyword: str) -> bool:
        """Consume the next word if it abbreviates ``keyword`` (tc's ``matches()``)."""
        if self._i < len(self._words) and keyword.startswith(self._words[self._i]):
            self._i += 1
            return True
        return False


def _option(word: str) -> str:
    if word in _SEMNET_KEYWORDS:
        return word
    for keyword, option in _KEYWORDS:
        if keyword.startswith(word):
            return option
    raise ConfigError(f"netem: unknown option {word!r}")


def _optional_percent(tokens: _Tokens, where: str, default: float) -> float:
    word = tokens.take_number()
    return default if word is None else parse_percent(word, where)


def _parse_chance(tokens: _Tokens, where: str) -> Chance:
    percent = parse_percent(tokens.take(where), where)
    return Chance(percent, _optional_percent(tokens, f"{where} correlation", 0.0))


def _parse_loss(tokens: _Tokens) -> Loss:
    model = tokens.take("loss")
    if starts_like_number(model) or model == "random":
        if model == "random":
            model = tokens.take("loss random")
        percent = parse_percent(model, "loss random")
        return Chance(percent, _optional_percent(tokens, "loss random correlation", 0.0))
    if model == "state":
        where = "loss state"
        p13 = parse_percent(tokens.take(where), where)
        p31 = _optional_percent(tokens, where, 100.0 - p13)
        p32 = _optional_percent(tokens, where, 0.0)
        p23 = _optional_percent(tokens, where, 100.0)
        return LossState(p13, p31, p32, p23, _optional_percent(tokens, where, 0.0))
    if model == "gemodel":
        where = "loss gemodel"
        p = parse_percent(tokens.take(where), where)
        r = _optional_percent(tokens, where, 100.0 - p)
        one_minus_h = _optional_percent(tokens, where, 100.0)
        return LossGemodel(p, r, one_minus_h, _optional_percent(tokens, where, 0.0))
    if model == "burst":
        where = "loss burst"
        rate = parse_percent(tokens.take(where), where)
        length = parse_number(tokens.take(f"{where} length"), f"{where} length")
        cap = 0
        if tokens.take_keyword("max"):
            cap = parse_int(tokens.take(f"{where} max"), f"{where} max", 1, S32_MAX)
        return LossBurst(rate, length, cap)
    raise ConfigError(f"loss: unknown model {model!r} (expected random, state, gemodel or burst)")


def _parse_delay(tokens: _Tokens) -> tuple[int, int, float]:
    time_ns = parse_time(tokens.take("delay"), "delay")
    jitter_word = tokens.take_number()
    if jitter_word is None:
        return time_ns, 0, 0.0
    jitter_ns = parse_time(jitter_word, "delay jitter")
    return time_ns, jitter_ns, _optional_percent(tokens, "delay correlation", 0.0)


def _parse_distribution(word: str, where: str) -> str:
    if word not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: {word!r} is not one of {', '.join(DISTRIBUTIONS)}")
    return word


def _parse_rate(tokens: _Tokens) -> Rate:
    bytes_per_s = parse_rate(tokens.take("rate"), "rate")
    fields = [0, 0, 0]
    for i, (signed, lo, hi) in enumerate(
        ((True, -S32_MAX - 1, S32_MAX), (False, 0, U32_MAX), (True, -S32_MAX - 1, S32_MAX))
    ):
        word = tokens.take_number(signed)
        if word is None:
            break
        fields[i] = parse_int(word, "rate", lo, hi)
    return Rate(bytes_per_s, *fields)


def _parse_slot(tokens: _Tokens) -> Slot:
    where = "slot"
    first = tokens.take_number()
    if first is not None:
        low = parse_time(first, f"{where} min_delay")
        second = tokens.take_number()
        high = low if second is None else parse_time(second, f"{where} max_delay")
        if high < low:
            raise ConfigError(f"{where}: max_delay {second!r} is below min_delay {first!r}")
        slot = Slot(min_ns=low, max_ns=high)
    else:
        word = tokens.take(where)
        if word != "distribution":
            raise ConfigError(f"{where}: unknown parameter {word!r}")
        name = _parse_distribution(tokens.take(f"{where} distribution"), f"{where} distribution")
        delay_ns = parse_time(tokens.take(f"{where} delay"), f"{where} delay")
        jitter_word = tokens.take(f"{where} jitter")
        jitter_ns = parse_time(jitter_word, f"{where} jitter")
        if jitter_ns <= 0:
            raise ConfigError(f"{where} jitter: {jitter_word!r} is not positive")
        slot = Slot(distribution=name, delay_ns=delay_ns, jitter_ns=jitter_ns)
    if tokens.take_keyword("packets"):
        word = tokens.take(f"{where} packets")
        slot = replace(slot, packets=parse_int(word, f"{where} packets", 0, S32_MAX))
    if tokens.take_keyword("bytes"):
        word = tokens.take(f"{where} bytes")
        size = parse_size(word, f"{where} bytes")
        if size > S32_MAX:
            raise ConfigError(f"{where} bytes: {word!r} is above {S32_MAX}")
        slot = replace(slot, bytes=size)
    return slot


def parse_db(token: str, where: str) -> float:
    """A level in decibels: ``10dB``, ``-3.5db`` or a bare ``10`` (dB)."""
    match = _DB.match(token)
    if match is None:
        raise ConfigError(f"{where}: {token!r} is not a level in dB (e.g. 10dB, -3dB)")
    value = float(match.group(1))
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {token!r} is too large (not a finite number)")
    return value


def link_from_words(channel: str, params: dict[str, str], where: str = "link") -> Link:
    """A :class:`Link` from its channel word and ``{parameter: token}``; errors name the token."""
    if channel not in LINK_CHANNELS:
        raise ConfigError(
            f"{where}: unknown channel {channel!r} (expected {' or '.join(LINK_CHANNELS)})"
        )
    if "snr" not in params:
        raise ConfigError(f"{where}: missing snr (e.g. 'link {channel} snr 10dB')")
    values: dict[str, object] = {"snr_db": parse_db(params["snr"], f"{where} snr")}
    if "blocklength" in params:
        values["blocklength"] = parse_int(params["blocklength"], f"{where} blocklength", 1, S32_MAX)
    if "coderate" in params:
        word = params["coderate"]
        values["coderate"] = parse_number(word, f"{where} coderate")
    if "subcarriers" in params:
        values["subcarriers"] = parse_int(params["subcarriers"], f"{where} subcarriers", 1, 4096)
    for word in ("power", "errors", "allocation", "modulation"):
        if word in params:
            values[word] = params[word]
    bits = values.get("errors") == "bits"
    for word in BITS_ONLY if not bits else PACKET_ONLY:
        if word in params:
            mode = "errors bits" if bits else "packet errors"
            raise ConfigError(f"{where}: {word} does not apply to {mode}")
    return Link(channel, **values)


def _parse_link(tokens: _Tokens) -> Link:
    channel = tokens.take("link")
    params: dict[str, str] = {}
    while (word := tokens.peek()) in _LINK_PARAMS:
        tokens.take("link")
        if word in params:
            raise ConfigError(f"link {word}: given twice")
        params[word] = tokens.take(f"link {word}")
    return link_from_words(channel, params)


_PARSERS: dict[str, Callable[[_Tokens], object]] = {
    "limit": lambda t: parse_size(t.take("limit"), "limit"),
    "delay": _parse_delay,
    "loss": _parse_loss,
    "reorder": lambda t: _parse_chance(t, "reorder"),
    "corrupt": lambda t: _parse_chance(t, "corrupt"),
    "duplicate": lambda t: _parse_chance(t, "duplicate"),
    "gap": lambda t: parse_int(t.take("gap"), "gap", 0, U32_MAX),
    "distribution": lambda t: _parse_distribution(t.take("distribution"), "distribution"),
    "rate": _parse_rate,
    "slot": _parse_slot,
    "seed": lambda t: parse_int(t.take("seed"), "seed", 0, 2**64 - 1),
    "inorder": lambda t: True,
    "link": _parse_link,
}


def parse_options(words: list[str]) -> dict[str, object]:
    """Each option's parsed value, keyed by option name, before cross-option checks."""
    tokens = _Tokens(words)
    found: dict[str, object] = {}
    while tokens:
        option = _option(tokens.take("netem"))
        if option == "ecn":
            raise ConfigError("ecn: marking needs an IP header; semnet impairs UDP payloads")
        if option in found:
            raise ConfigError(f"{option}: given twice")
        found[option] = _PARSERS[option](tokens)
    return found


def parse_spec(text: str) -> ImpairSpec:
    """Parse netem options (``"delay 20ms 5ms distribution normal loss gemodel 1% 30%"``).

    Raises ConfigError naming the offending option and token.
    """
    return assemble(parse_options(netem_words(text)))


def netem_words(text: str) -> list[str]:
    """The option words of ``text``: a full ``tc qdisc ... netem`` line loses its prefix."""
    words = text.split()
    return words[words.index("netem") + 1 :] if "netem" in words else words


def assemble(found: dict[str, object]) -> ImpairSpec:
    """Apply tc's cross-option rules to :func:`parse_options`' result and build the spec."""
    distribution = found.get("distribution", "uniform")
    delay = None
    if "delay" in found:
        time_ns, jitter_ns, corr = found["delay"]
        delay = Delay(time_ns, jitter_ns, corr, distribution, "inorder" in found)
    elif "distribution" in found:
        raise ConfigError("distribution: needs a delay and a jitter")
    elif "inorder" in found:
        raise ConfigError("inorder: needs a delay")
    reorder = None
    gap = found.get("gap", 0)
    if "reorder" in found:
        chance = found["reorder"]
        reorder = Reorder(chance.percent, chance.corr, gap or 1)
    elif gap:
        raise ConfigError("gap: specified without a reorder probability")
    return ImpairSpec(
        limit=found.get("limit", DEFAULT_LIMIT),
        delay=delay,
        loss=found.get("loss"),
        duplicate=found.get("duplicate"),
        corrupt=found.get("corrupt"),
        reorder=reorder,
        rate=found.get("rate"),
        slot=found.get("slot"),
        seed=found.get("seed"),
        link=found.get("link"),
    )


def _format_chance(name: str, chance: Chance) -> str:
    corr = f" {format_percent(chance.corr)}" if chance.corr else ""
    return f"{name} {format_percent(chance.percent)}{corr}"


def _format_loss(loss: Loss) -> str:
    if isinstance(loss, Chance):
        return _format_chance("loss random", loss)
    if isinstance(loss, LossState):
        values = (loss.p13, loss.p31, loss.p32, loss.p23, loss.p14)
        return "loss state " + " ".join(map(format_percent, values))
    if isinstance(loss, LossGemodel):
        values = (loss.p, loss.r, loss.one_minus_h, loss.one_minus_k)
        return "loss gemodel " + " ".join(map(format_percent, values))
    cap = f" max {loss.max_burst}" if loss.max_burst else ""
    return f"loss burst {format_percent(loss.rate)} {format_number(loss.length)}{cap}"


def _format_delay(delay: Delay) -> list[str]:
    parts = [f"delay {format_time(delay.time_ns)}"]
    if delay.jitter_ns or delay.corr:
        parts.append(format_time(delay.jitter_ns))
    if delay.corr:
        parts.append(format_percent(delay.corr))
    if delay.distribution != "uniform":
        parts.append(f"distribution {delay.distribution}")
    if delay.inorder:
        parts.append("inorder")
    return parts


def _format_rate(rate: Rate) -> str:
    extras = [rate.packet_overhead, rate.cell_size, rate.cell_overhead]
    while extras and not extras[-1]:
        extras.pop()
    return " ".join([f"rate {format_rate(rate.bytes_per_s)}", *map(str, extras)])


def _format_slot(slot: Slot) -> str:
    if slot.distribution is None:
        parts = [f"slot {format_time(slot.min_ns)}", format_time(slot.max_ns)]
    else:
        parts = [f"slot distribution {slot.distribution}", format_time(slot.delay_ns)]
        parts.append(format_time(slot.jitter_ns))
    if slot.packets:
        parts.append(f"packets {slot.packets}")
    if slot.bytes:
        parts.append(f"bytes {slot.bytes}")
    return " ".join(parts)


def _format_link(link: Link) -> str:
    head = f"link {link.channel} snr {format_number(link.snr_db)}dB"
    if link.bit_errors:
        return f"{head} errors bits allocation {link.allocation} modulation {link.modulation}"
    return (
        f"{head} blocklength {link.blocklength} coderate {format_number(link.coderate)}"
        f" subcarriers {link.subcarriers} power {link.power}"
    )


def format_spec(spec: ImpairSpec) -> str:
    """The spec as netem options; ``parse_spec(format_spec(s)) == s``."""
    parts: list[str] = []
    if spec.limit != DEFAULT_LIMIT:
        parts.append(f"limit {spec.limit}")
    if spec.delay is not None:
        parts.extend(_format_delay(spec.delay))
    if spec.loss is not None:
        parts.append(_format_loss(spec.loss))
    if spec.duplicate is not None:
        parts.append(_format_chance("duplicate", spec.duplicate))
    if spec.corrupt is not None:
        parts.append(_format_chance("corrupt", spec.corrupt))
    if spec.reorder is not None:
        reorder = spec.reorder
        gap = f" gap {reorder.gap}" if reorder.gap != 1 else ""
        parts.append(_format_chance("reorder", Chance(reorder.percent, reorder.corr)) + gap)
    if spec.rate is not None:
        parts.append(_format_rate(spec.rate))
    if spec.slot is not None:
        parts.append(_format_slot(spec.slot))
    if spec.link is not None:
        parts.append(_format_link(spec.link))
    if spec.seed is not None:
        parts.append(f"seed {spec.seed}")
    return " ".join(parts)
