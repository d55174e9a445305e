"""CgroupPool: cgroups reused by many containers, under churn.  Needs root."""

from __future__ import annotations

import os
import threading

import pytest

from nsprim import ConfigError, run
from nsprim.cgroup import iter_nsprim_cgroups
from nsprim.pool import CgroupPool


def pool_cgroups() -> set[str]:
    return {os.path.basename(c) for c in iter_nsprim_cgroups() if "pool-" in c}


def test_pool_reuses_under_churn(rootfs: str) -> None:
    run(["true"], rootfs=rootfs, pids=8)  # the exec helper and device program, cached
    before = pool_cgroups()
    fds = len(os.listdir("/proc/self/fd"))
    errors: list[str] = []
    with CgroupPool(memory="64m", pids=32, size=4) as pool:
        def go(n: int) -> None:
            for i in range(25):
                r = run(["sh", "-c", f"echo {n}-{i}"], rootfs=rootfs, cgroup_pool=pool,
                        capture_output=True)
                if r.stdout != f"{n}-{i}\n".encode() or r.returncode != 0:
                    errors.append(repr(r))

        threads = [threading.Thread(target=go, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors[:3]
        assert pool.created <= 6 + 4  # 150 containers, a handful of cgroups
        assert len(pool_cgroups() - before) <= 4  # the idle ones, no more
    assert pool_cgroups() <= before
    assert len(os.listdir("/proc/self/fd")) == fds


def test_pool_limits_and_oom_per_container(rootfs: str) -> None:
    with CgroupPool(memory="32m", memory_swap="32m", pids=16, size=1) as pool:
        r = run(["sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=200M count=1"],
                rootfs=rootfs, cgroup_pool=pool)
        assert r.oom_killed and r.returncode == -9
        r = run(["sh", "-c", "cat /proc/self/cgroup >/dev/null; echo ok"], rootfs=rootfs,
                cgroup_pool=pool, capture_output=True)
        assert r.stdout == b"ok\n" and not r.oom_killed  # the next one starts clean
        r = run(["sh", "-c", "b() { b | b & }; b; sleep 1"], rootfs=rootfs, cgroup_pool=pool,
                capture_output=True, timeout=30)
        assert b"can't fork" in r.stderr
        assert pool.created == 1


def test_pool_empties_a_cgroup_before_reuse(rootfs: str) -> None:
    with CgroupPool(pids=16, size=1) as pool:
        # no pid namespace: the background sleep outlives the command
        run(["sh", "-c", "sleep 1000 >/dev/null 2>&1 &"], rootfs=rootfs, cgroup_pool=pool,
            namespaces={"pid": False})
        cg = pool.acquire()
        try:
            assert cg.procs() == []
        finally:
            pool.release(cg)


def test_pool_bad_input(rootfs: str) -> None:
    with pytest.raises(ConfigError, match="'many'"):
        CgroupPool(size="many")  # type: ignore[arg-type]
    with CgroupPool(pids=4) as pool:
        with pytest.raises(ConfigError, match="cgroup_pool"):
            run(["true"], rootfs=rootfs, cgroup_pool=pool, memory="64m")
    with pytest.raises(ValueError, match="closed"):
        pool.acquire()


def test_container_pool_churn_recycling_and_health(rootfs: str) -> None:
    from nsprim.pool import ContainerPool

    errors: list[str] = []
    with ContainerPool(["sleep", "100000"], rootfs=rootfs, size=2, max_uses=10,
                       pids=32) as pool:
        def go(n: int) -> None:
            for i in range(20):
                r = pool.exec(["sh", "-c", f"echo {n}-{i}"], capture_output=True, timeout=30)
                if r.stdout != f"{n}-{i}\n".encode():
                    errors.append(repr(r))

        threads = [threading.Thread(target=go, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors[:3]
        assert pool.started >= 80 // 10  # recycled after 10 uses each
        assert pool.started <= 80 // 10 + 8
        # what a command leaves running is killed before the next one
        c = pool.acquire()
        try:
            c.exec(["sh", "-c", "sleep 1000 >/dev/null 2>&1 &"])
        finally:
            pool.release(c)
        r = pool.exec(["ps", "-o", "comm"], capture_output=True)
        # nsprim-init (PID 1, shown by its memfd's name), the pool's sleep, ps
        assert r.stdout.split()[2:] == [b"sleep", b"ps"], r.stdout
        # a dead container is replaced
        c = pool.acquire()
        c.kill()
        c.wait()
        pool.release(c)
        assert pool.exec(["true"]).returncode == 0
    assert pool.closed


def test_container_pool_health_check(rootfs: str) -> None:
    from nsprim.pool import ContainerPool

    with ContainerPool(["sleep", "100000"], rootfs=rootfs, size=1,
                       health_check=["test", "!", "-e", "/tmp/broken"]) as pool:
        pool.exec(["touch", "/tmp/broken"])
        first = pool.started
        assert pool.exec(["true"]).returncode == 0
        assert pool.started == first + 1  # the broken one was retired
        assert pool.retired >= 1
