"""Rate-limited warnings: a flood of bad input must not flood the log (or the disk under it)."""

import logging
import time
from collections.abc import Callable


class LogThrottle:
    """At most ``burst`` lines per reason in any ``period`` seconds; the lines held back are
    counted, and the next line of that reason says how many."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 5,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.burst, self.period, self.clock = logger, burst, period, clock
        self.windows: dict[str, tuple[float, int]] = {}  # reason -> (window start, lines)
        self.held: dict[str, int] = {}

    def warning(self, reason: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``reason`` is over its budget; True when logged."""
        now = self.clock()
        start, lines = self.windows.get(reason, (now, 0))
        if now - start >= self.period:
            start, lines = now, 0
        if lines >= self.burst:
            self.windows[reason] = (start, lines)
            self.held[reason] = self.held.get(reason, 0) + 1
            return False
        self.windows[reason] = (start, lines + 1)
        held = self.held.pop(reason, 0)
        if held:
            message += f" ({held} more like this not logged)"
        self.logger.warning(message, *args)
        return True
