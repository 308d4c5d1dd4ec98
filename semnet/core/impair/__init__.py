"""netem-grade impairments in user space: a sans-IO pipeline fed datagrams and clock values.

``parse_spec("delay 20ms 5ms loss gemodel 1% 30%")`` gives an :class:`ImpairSpec`;
``Impairment(spec, seed).process(data, now)`` gives the copies to send and when. The proxy
daemon calls it per datagram, the offline sweep on a list: same code, same seed, same fates.
See docs/netem.md for the option table and where semnet differs from netem.
"""

from semnet.core.impair.mapping import patch_spec, spec_from_mapping
from semnet.core.impair.netem import format_spec, parse_spec
from semnet.core.impair.pipeline import (
    DROP_REASONS,
    Emission,
    Fate,
    ImpairCounters,
    Impairment,
    ImpairModel,
)
from semnet.core.impair.spec import (
    Chance,
    Delay,
    ImpairSpec,
    Link,
    LossBurst,
    LossGemodel,
    LossState,
    Rate,
    Reorder,
    Slot,
)
from semnet.core.impair.trace import (
    FateRecorder,
    ReplayImpairment,
    format_fate,
    load_trace,
    parse_trace,
)

__all__ = [
    "DROP_REASONS",
    "Chance",
    "Delay",
    "Emission",
    "Fate",
    "FateRecorder",
    "ImpairCounters",
    "ImpairModel",
    "ImpairSpec",
    "Impairment",
    "Link",
    "LossBurst",
    "LossGemodel",
    "LossState",
    "Rate",
    "Reorder",
    "ReplayImpairment",
    "Slot",
    "format_fate",
    "format_spec",
    "load_trace",
    "parse_spec",
    "parse_trace",
    "patch_spec",
    "spec_from_mapping",
]
