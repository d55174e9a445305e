#!/usr/bin/env bash
# Run the cgroup tests (and the device rules' BPF program, and rootless limits
# in a subtree `nsprim system delegate` made) in a short-lived VM whose kernel boots pure cgroup v2
# (this kind of machine is hybrid: its limit controllers are v1).  Recipe:
# shared/notes/cgroup-v2-vm.md -- Debian's kernel under QEMU software
# emulation (the host's /dev/kvm cannot run a stock kernel), through virtme-ng,
# with the host's / visible read-only in the guest.
#
#   bash tests/vm/cgroup_v2.sh            # installs what it needs (root, Debian)
#
# Exit status: the guest's pytest status; 3 if the VM could not boot.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
PYABS=$("$PY" -c 'import sys; print(sys.executable)')
PYBIN=$(dirname "$PYABS")

if ! ls /boot/vmlinuz-*-amd64 >/dev/null 2>&1 || ! command -v qemu-system-x86_64 >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends qemu-system-x86 linux-image-amd64 >/dev/null
fi
if ! PATH="$PYBIN:$PATH" command -v vng >/dev/null; then
    "$PYABS" -m pip install -q --disable-pip-version-check virtme-ng
fi
export PATH="$PYBIN:$PATH"   # vng runs virtme-run by name

kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -n 1)
out=$(mktemp -d /tmp/nsprim-vm.XXXXXX)
trap 'rm -rf "$out"' EXIT
cat > "$out/guest.sh" <<GUEST
#!/bin/sh
cd "$PWD"
grep cgroup /proc/self/mountinfo > "$out/mounts.txt"
# virtme binds a file over /etc/shadow, so useradd's rename fails (EBUSY): the
# rootless tests' users need it writable (the guest's /etc is a throwaway overlay)
umount /etc/shadow 2>/dev/null || true
export NSPRIM_TESTS_MUST_RUN=1 NSPRIM_EXPECT_CGROUP=v2 PYTHONDONTWRITEBYTECODE=1
"$PYABS" -m pytest -q -p no:cacheprovider tests/test_cgroup.py \
    tests/security/test_devices.py tests/test_rootless_cgroup.py \
    -k "test_cgroup or bpf or container_cgroup_enforces" \
    > "$out/pytest.log" 2>&1
echo \$? > "$out/rc"
GUEST
chmod +x "$out/guest.sh"

echo "booting $kernel (software emulation; this takes a while)"
set +e
timeout 1200 vng --disable-kvm --run "$kernel" --cpus 2 --memory 2G --rwdir="$out" \
    --exec "sh $out/guest.sh" </dev/null > "$out/vng.log" 2>&1
vng_rc=$?
set -e
if [ ! -f "$out/rc" ]; then
    echo "!!! the cgroup v2 VM did not run the tests (vng exit $vng_rc):" >&2
    tail -n 30 "$out/vng.log" >&2
    exit 3
fi
echo "guest cgroup mounts:"; cat "$out/mounts.txt"
cat "$out/pytest.log"
exit "$(cat "$out/rc")"
