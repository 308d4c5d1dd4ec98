#!/usr/bin/env python3
"""Install Fashion-MNIST (Debian package ``dataset-fashion-mnist``) for the multi-task codec.

The package puts the four gzipped idx files under /usr/share/datasets/fashion-mnist/; the
trainer and tests read them from there (``semnet.models.fashion_mnist``). Nothing else is
downloaded. Usage: python scripts/install_fashion_mnist.py
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = "dataset-fashion-mnist"
ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def installed() -> bool:
    return all((ROOT / f).is_file() for f in FILES)


def main() -> None:
    if not installed():
        if shutil.which("apt-get") is None:
            sys.exit(f"apt-get not found; install the Debian package {PACKAGE} by hand")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run([*sudo, "apt-get", "install", "-y", "-q", PACKAGE], env=env).returncode:
            subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env)
            subprocess.run([*sudo, "apt-get", "install", "-y", "-q", PACKAGE], check=True, env=env)
    if not installed():
        sys.exit(f"{PACKAGE} is installed but {ROOT} lacks {', '.join(FILES)}")
    print(f"Fashion-MNIST: {ROOT}")


if __name__ == "__main__":
    main()
