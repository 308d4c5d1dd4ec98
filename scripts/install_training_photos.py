#!/usr/bin/env python3
"""Install the training photos from Debian wallpaper packages and write their manifest.

Training never touches the evaluation photos (scikit-image / scikit-learn / matplotlib samples).
The manifest (data/training_photos.json) lists file, sha256 and size; its hash goes into every
checkpoint's zoo entry so a model says exactly what it was trained on.
Usage: python scripts/install_training_photos.py [--no-install]
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = [
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
]
MANIFEST = Path(__file__).resolve().parent.parent / "data" / "training_photos.json"


def install() -> None:
    missing = [
        p
        for p in PACKAGES
        if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0
    ]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        sys.exit(f"apt-get not found; install these Debian packages by hand: {' '.join(missing)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", *missing], check=True, env=env)


def photos() -> list[Path]:
    """Lomiri and MATE nature photos, and the largest image of each Plasma wallpaper."""
    lomiri = subprocess.run(
        ["dpkg", "-L", "lomiri-wallpapers-16.04"], capture_output=True, text=True
    ).stdout.split()
    found = [Path(p) for p in lomiri if p.endswith(".jpg")]
    found.append(Path("/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"))
    found += sorted(Path("/usr/share/backgrounds/mate/nature").glob("*.jpg"))
    for folder in sorted(Path("/usr/share/wallpapers").glob("*/contents/images")):
        images = [p for p in folder.iterdir() if p.suffix in (".jpg", ".png")]
        if images:
            found.append(max(images, key=lambda p: p.stat().st_size))
    return sorted({p for p in found if p.is_file()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-install", action="store_true", help="only write the manifest")
    args = parser.parse_args()
    if not args.no_install:
        install()
    entries = [
        {
            "file": str(p),
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "size": p.stat().st_size,
        }
        for p in photos()
    ]
    if not entries:
        sys.exit("no training photos found; are the wallpaper packages installed?")
    MANIFEST.parent.mkdir(exist_ok=True)
    MANIFEST.write_text(json.dumps(entries, indent=1) + "\n")
    print(f"{len(entries)} photos, manifest written to {MANIFEST}")


if __name__ == "__main__":
    main()
