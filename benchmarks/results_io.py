"""What every benchmark does with its result: JSON in benchmarks/results/ (or --out)."""

import json
from pathlib import Path


def write_json(path: str | Path, result: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
