#!/usr/bin/env bash
# Debian tools the deployment and network-namespace tests use (tests/test_deploy.py,
# tests/test_netns.py): docker-compose 1.29 validates the compose files offline, prometheus
# brings promtool and a real server to scrape the daemons, iproute2 brings `ip netns`.
# Idempotent: does nothing when every package is already installed. Needs root (or sudo) for
# the install; without either it says so and exits 0, and those tests skip with a reason.
set -euo pipefail

packages=(docker-compose prometheus iproute2 dataset-fashion-mnist)
missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install_test_tools: no apt-get; missing ${missing[*]} (their tests will skip)" >&2
    exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "install_test_tools: not root and no sudo; missing ${missing[*]} (their tests will skip)" >&2
        exit 0
    fi
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
