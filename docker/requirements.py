"""Print the runtime requirements named in pyproject.toml, one a line, for `pip install -r`.

`python requirements.py pyproject.toml [EXTRA ...]`: the project's dependencies plus those of
each named optional extra. The Docker build installs these in a layer of their own, before the
code, so a code change does not reinstall them.
"""

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"requirements.py: no extra named {', '.join(unknown)}")
    return [*project["dependencies"], *(r for e in extras for r in optional[e])]


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
