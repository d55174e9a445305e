#!/usr/bin/env bash
# The main job: set up, build a busybox rootfs from the host's busybox-static
# (no network needed), and run a real container in it with the nsprim CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=$PWD/.venv/bin/python  # made by scripts/setup.sh
root=$(mktemp -d /tmp/nsprim-demo.XXXXXX)
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT
"$PY" -m nsprim.testing busybox-rootfs "$root/rootfs" >/dev/null
"$PY" -m nsprim run --rm --rootfs "$root/rootfs" --hostname demo -e GREETING=hello -- \
    sh -c 'echo "$GREETING from pid $$ on $(hostname) as $(id -u)";
           echo "processes: $(ls /proc | grep -c "^[0-9]")";
           echo "network: $(ls /sys/class/net)";
           grep -E "^(CapEff|NoNewPrivs)" /proc/self/status'
