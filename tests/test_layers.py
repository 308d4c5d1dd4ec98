"""The house has floors: no module imports from a floor above its own (DESIGN.md, Layers).

Read from the source with ``ast``, so imports inside functions count too: a lazy import that
points up is still an arrow up.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "semnet"

# Bottom to top. A module's floor is that of its top-level module or subpackage.
LAYERS = (
    ("semnet", "semnet.errors"),  # the version and the one exception family
    ("semnet.config", "semnet.images", "semnet.eval_images"),  # YAML configs, image files
    ("semnet.core",),  # sans-IO: wire, partitions, impairments, reassembly, entropy coding
    ("semnet.models",),  # torch: codecs, fills, imputers, metrics, the zoo
    ("semnet.pipeline",),  # frame <-> datagrams, the offline chain
    ("semnet.baselines", "semnet.client", "semnet.daemons"),  # over the pipeline, side by side
    ("semnet.testbed",),  # the three daemons as processes on loopback
    ("semnet.experiments",),  # sweeps and RD curves, over all of the above
    ("semnet.cli", "semnet.__main__"),  # the faces
)
FLOOR = {group: i for i, groups in enumerate(LAYERS) for group in groups}


def group(module: str) -> str:
    """``semnet.pipeline.frames`` -> ``semnet.pipeline``; ``semnet`` stays itself."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported semnet module) of every import in a file, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            # `from semnet import cli` names a subpackage; `from semnet import __version__` not
            found += [
                (node.lineno, f"semnet.{alias.name}")
                if node.module == "semnet" and f"semnet.{alias.name}" in FLOOR
                else (node.lineno, node.module)
                for alias in node.names
            ]
    return [(line, name) for line, name in found if name.split(".")[0] == "semnet"]


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_floor():
    missing = {group(module_name(p)) for p in SOURCES} - set(FLOOR)
    assert not missing, f"place these in LAYERS: {sorted(missing)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_module_imports_from_a_floor_above(path):
    here = group(module_name(path))
    up = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name} ({group(name)} is above {here})"
        for line, name in imports(path)
        if FLOOR[group(name)] > FLOOR[here]
    ]
    assert not up, "\n".join(up)
