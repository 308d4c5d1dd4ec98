"""The JSON Lines journal of a sweep: a header naming the sweep, then each row as it finishes.

An interrupted sweep keeps every finished row here, and a resumed one reads them back and
measures only what is missing (and the rows whose ``status`` is ``failed``). A header that
differs (other axes, images, mode or threads) refuses to resume rather than mix the rows of two
sweeps. Rows go in as they finish, which on several workers is not cell order; once every cell
has its row, :meth:`Journal.settle` rewrites the file in cell order, so a finished journal is
the same file however it was measured.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path

from semnet.errors import ConfigError

Key = Callable[[dict], tuple]


def _read(path: Path) -> tuple[dict | None, list[dict]]:
    """(header, rows) of a journal, up to its first broken line (a row cut by a kill)."""
    header, rows = None, []
    with path.open() as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                break
            if header is None:
                header = record
            else:
                rows.append(record)
    return header, rows


def _differences(old: dict, new: dict) -> list[str]:
    """Top-level keys (one level down in dicts) whose values differ."""
    out = []
    for k in dict.fromkeys([*old, *new]):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{name}" for name in _differences(a, b)]
        elif a != b:
            out.append(k)
    return out


class Journal:
    """Rows appended one a line and flushed as they finish. Nothing is touched until
    :meth:`open` (after a sweep's checks pass); then ``done`` maps each kept row's key to the
    row, so a resumed sweep can skip it, and ``rows`` counts the measured (not failed) rows the
    file holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[tuple, dict] = {}
        self.rows = 0
        self.file = None
        self.header: dict = {}

    def open(self, header: dict, key: Key, resume: bool = False) -> "Journal":
        header = json.loads(json.dumps(header))  # tuples as lists, as they come back
        if resume and self.path.exists():
            old, rows = _read(self.path)
            if old != header:
                changed = ", ".join(_differences(old or {}, header)) or "header"
                raise ConfigError(
                    f"--resume: {self.path} holds another sweep ({changed} differ); "
                    "delete it or run without --resume"
                )
            self.done = {key(r): r for r in rows if r.get("status") != "failed"}
        self.header = header
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("w")  # rewritten whole: drops a cut last line, failed rows
        self.file.write(json.dumps(header) + "\n")
        for row in self.done.values():
            self.append(row)
        return self

    def append(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        self.rows += row.get("status") != "failed"

    def settle(self, rows: list[dict]) -> None:
        """Rewrite the journal as the header and ``rows`` (every cell's, in cell order); the
        old file stays whole until the new one replaces it."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in [self.header, *rows]))
        self.file.close()
        os.replace(temporary, self.path)
        self.file = self.path.open("a")

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()
