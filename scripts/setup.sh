#!/usr/bin/env bash
# Installs what nsprim and its tests need on a fresh Debian machine (as root):
# a C compiler, busybox-static (test rootfs), the peers used by tests and
# benchmarks, and the package itself with its test extras in .venv (the
# `nsprim` command is then .venv/bin/nsprim).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" \
    || need_apt+=(busybox-static)
command -v ipcmk >/dev/null || need_apt+=(util-linux)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
command -v file >/dev/null || need_apt+=(file)
# seccomp: libseccomp names each architecture's syscalls (nsprim lays out the
# program itself); losetup makes the loop device the device tests attack
dpkg-query -W -f='${Status}' libseccomp2 2>/dev/null | grep -q "ok installed" \
    || need_apt+=(libseccomp2)
command -v losetup >/dev/null || need_apt+=(mount)
# a real registry and independent image tools for the image tests
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v umoci >/dev/null || need_apt+=(umoci)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
# nsprim build: saved archives are loaded and run by podman in the tests.
# The engines that drive nsprim-runtime in the tests (podman with conmon,
# containerd with its runc v2 shim and ctr, dockerd), runc and crun for the
# OCI runtime benchmark, script(1) for a terminal
command -v podman >/dev/null || need_apt+=(podman)
# podman's own network stack for benchmarks/network.py's like-for-like row
# (Debian's podman 4.3 falls back to CNI without them)
[ -x /usr/lib/podman/netavark ] || need_apt+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || need_apt+=(aardvark-dns)
command -v containerd >/dev/null || need_apt+=(containerd)
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v docker >/dev/null || need_apt+=(docker.io)
command -v runc >/dev/null || need_apt+=(runc)
command -v crun >/dev/null || need_apt+=(crun)
command -v script >/dev/null || need_apt+=(bsdutils)
# nftables (libnftables1 for NAT rules, nft for the tests), iproute2 (ip, tc),
# Debian's python3 (a UDP server inside a test container)
command -v nft >/dev/null || need_apt+=(nftables)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v ss >/dev/null || need_apt+=(iproute2)  # tests/security/test_etc_and_proxy.py
[ -x /usr/bin/python3 ] || need_apt+=(python3)
# rootless tests: newuidmap/newgidmap, Debian's python3 with cffi for the
# unprivileged test users (root's venv is not theirs), pasta for their network
command -v newuidmap >/dev/null || need_apt+=(uidmap)
/usr/bin/python3 -c 'import cffi' 2>/dev/null || need_apt+=(python3-cffi)
command -v pasta >/dev/null || need_apt+=(passt)
# benchmarks/rootless.py: rootless podman 4.3 (no pasta yet) uses slirp4netns
command -v slirp4netns >/dev/null || need_apt+=(slirp4netns)
# nsprim daemon's clients: the docker CLI (docker.io's, where no newer one is
# installed), docker-compose v1, script (a terminal for -it); dockerd and
# containerd (docker.io) are the benchmark's peer
command -v docker >/dev/null || need_apt+=(docker.io)
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v script >/dev/null || need_apt+=(bsdutils)
# podman: the peer benchmarks.ps measures ps/images/inspect against
command -v podman >/dev/null || need_apt+=(podman)
# nsprim top runs the host's ps (issue 12)
command -v ps >/dev/null || need_apt+=(procps)
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # the engines' packages must not start host daemons (dockerd would add
    # iptables rules and docker0): the tests start their own, privately
    no_start=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        no_start=1
    fi
    rc=0
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null || rc=$?
    [ -z "$no_start" ] || rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || exit "$rc"
fi

# nsprim and its test tools go into a virtual environment in the checkout,
# built from whatever python3 is first on PATH: Debian's own refuses `pip
# install` into itself (PEP 668, "externally managed").  PYTHON=... picks
# another interpreter to build it from.
BASE=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$BASE" -m venv .venv 2>/dev/null; then
        # Debian's python3 without ensurepip
        rm -rf .venv
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        "$BASE" -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check ".[test,dev]"
