"""What the containment issue's protections (seccomp, device control, the
sealed exec helper, the session keyring) cost on the in-process docker-default
start: ``run(['/bin/true'], rootfs=R)`` under the nsprim before them (an
install of commit f72d2dd in its own venv) and under this one, interleaved in
rounds, each in an interpreter process of its own doing a batch of runs.
Then, in isolation: installing nsprim's seccomp program against libseccomp's
(the seccomp(2) call alone, in fresh forked children), and the exec through
the helper (nsprim-init execveat'd from a sealed memfd, then exec'ing
/bin/true) against exec'ing /bin/true directly.

    python -m benchmarks.protections --old /work/venv-bench-old/bin/python
                                     [--rounds N] [--batch N] [--micro N]

Set the old install up with:

    git -C /work/main worktree add /work/wt-bench-old f72d2dd
    python3 -m venv /work/venv-bench-old --system-site-packages
    /work/venv-bench-old/bin/pip install -q /work/wt-bench-old

Without --old it only says so and exits 0.  Not for CI: it needs the second
install and takes minutes.  Needs root and a C compiler.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import make_rootfs, median, pct

GOAL_MS = 0.3

# one interpreter: warm up, then n timed default runs, one time per line;
# the first line names the nsprim that ran
_LOOP = """
import sys, time
import nsprim
from nsprim import run
rootfs, n = sys.argv[1], int(sys.argv[2])
print(nsprim.__file__, flush=True)
for _ in range(3):
    assert run(["/bin/true"], rootfs=rootfs).returncode == 0
for _ in range(n):
    t = time.perf_counter()
    r = run(["/bin/true"], rootfs=rootfs)
    d = time.perf_counter() - t
    assert r.returncode == 0
    print(d, flush=True)
"""

# the micro-benchmarks, in C: each sample is a fresh forked child
_MICRO_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* seccomp FILE N: N times, a forked child installs the program in FILE;
 * prints the ns the seccomp(2) call took */
static int install(const char *path, int n)
{
    static struct sock_filter prog[BPF_MAXINSNS];
    struct sock_fprog fp;
    FILE *f = fopen(path, "rb");
    int i, p[2];
    if (f == NULL)
        return 1;
    fp.len = (unsigned short)fread(prog, sizeof prog[0], BPF_MAXINSNS, f);
    fp.filter = prog;
    fclose(f);
    if (pipe(p) < 0)
        return 1;
    for (i = 0; i < n; i++) {
        long long d;
        int st;
        pid_t pid = fork();
        if (pid == 0) {
            long long a = now();
            if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) < 0)
                _exit(1);
            d = now() - a;
            _exit(write(p[1], &d, sizeof d) == sizeof d ? 0 : 1);
        }
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || st != 0)
            return 1;
        if (read(p[0], &d, sizeof d) != sizeof d)
            return 1;
        printf("%lld\n", d);
    }
    return 0;
}

/* exec HELPER N: N times each, alternating, fork + exec + wait of
 * (a) /bin/true and (b) HELPER (copied into a sealed memfd, as nsprim.exe
 * does) exec'ing /bin/true; prints "a b" in ns per line */
static int execs(const char *helper, int n)
{
    char buf[1 << 16];
    char *dargv[] = {"/bin/true", NULL};
    char *hargv[] = {"nsprim-init", "x", "-", "/bin", "/bin/true", NULL};
    char *envp[] = {"PATH=/bin", NULL};
    ssize_t r;
    int i, k, in = open(helper, O_RDONLY | O_CLOEXEC);
    int mfd = memfd_create("nsprim-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (in < 0 || mfd < 0)
        return 1;
    while ((r = read(in, buf, sizeof buf)) > 0)
        if (write(mfd, buf, (size_t)r) != r)
            return 1;
    close(in);
    if (fchmod(mfd, 0555) < 0 ||
        fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0)
        return 1;
    for (i = 0; i < n; i++) {
        long long d[2];
        for (k = 0; k < 2; k++) {
            int st;
            long long a = now();
            pid_t pid = fork();
            if (pid == 0) {
                if (k == 0)
                    execve(dargv[0], dargv, envp);
                else
                    syscall(SYS_execveat, mfd, "", hargv, envp, AT_EMPTY_PATH);
                _exit(127);
            }
            if (pid < 0 || waitpid(pid, &st, 0) < 0 || st != 0)
                return 1;
            d[k] = now() - a;
        }
        printf("%lld %lld\n", d[0], d[1]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "seccomp") == 0)
        return install(argv[2], atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "exec") == 0)
        return execs(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: micro seccomp FILE N | exec HELPER N\n");
    return 2;
}
"""


def _loop(python: str, rootfs: str, n: int, state: str, cwd: str) -> tuple[str, list[float]]:
    env = dict(os.environ, NSPRIM_ROOT=state)
    env.pop("PYTHONPATH", None)
    out = subprocess.run([python, "-c", _LOOP, rootfs, str(n)], check=True,
                         capture_output=True, text=True, env=env, cwd=cwd).stdout.split("\n")
    return out[0], [float(x) for x in out[1:] if x]


def _micro(work: Path, n: int) -> None:
    from nsprim.caps import DOCKER_DEFAULT_CAPS
    from nsprim.exe import HELPER_PATH
    from nsprim.seccomp import DEFAULT, _compile, _compile_libseccomp

    src = work / "micro.c"
    src.write_text(_MICRO_C)
    exe = str(work / "micro")
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe, str(src)],
                   check=True)
    caps = frozenset("CAP_" + c for c in DOCKER_DEFAULT_CAPS)
    progs = {"nsprim": _compile(DEFAULT(), caps),
             "libseccomp": _compile_libseccomp(DEFAULT(), caps)}
    files = {}
    for k, p in progs.items():
        files[k] = str(work / f"{k}.bpf")
        Path(files[k]).write_bytes(p)
    # interleaved: 10 rounds of n/10 installs of each
    got: dict[str, list[float]] = {k: [] for k in progs}
    rounds = 10
    for _ in range(rounds):
        for k in progs:
            out = subprocess.run([exe, "seccomp", files[k], str(max(1, n // rounds))],
                                 check=True, capture_output=True, text=True).stdout
            got[k] += [int(x) / 1e3 for x in out.split()]
    print(f"\nseccomp(2) install of docker's default profile, {rounds} rounds x "
          f"{max(1, n // rounds)} forked children each (us):")
    for k in progs:
        print(f"  {k:11} {len(progs[k]) // 8:4d} instructions: p50 {median(got[k]):7.1f}  "
              f"p90 {pct(got[k], .9):7.1f}")
    print(f"  nsprim's saves {median(got['libseccomp']) - median(got['nsprim']):.1f} us "
          "per container start")

    out = subprocess.run([exe, "exec", HELPER_PATH, str(n)], check=True,
                         capture_output=True, text=True).stdout
    pairs = [tuple(int(x) / 1e3 for x in line.split()) for line in out.splitlines()]
    direct = [a for a, _ in pairs]
    helper = [b for _, b in pairs]
    diff = [b - a for a, b in pairs]
    print(f"\nexec through the helper, {n} alternating pairs of fork + exec + wait (us):")
    print(f"  {'/bin/true directly':40} p50 {median(direct):7.1f}")
    print(f"  {'nsprim-init (sealed memfd) -> /bin/true':40} p50 {median(helper):7.1f}")
    print(f"  {'the helper adds':40} p50 {median(diff):7.1f} (median of the pairwise "
          "differences)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", metavar="PYTHON", help="the interpreter with nsprim f72d2dd")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=30)
    ap.add_argument("--micro", type=int, default=500, help="samples per micro-benchmark")
    a = ap.parse_args(argv)
    if not a.old:
        print("protections: skipped (no --old PYTHON: an interpreter with the pre-issue "
              "nsprim, see the docstring)")
        return 0
    if os.geteuid() != 0:
        print("protections: needs root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="nsprim-protections-"))
    os.chmod(work, 0o755)
    os.environ["NSPRIM_ROOT"] = str(work / "state-micro")
    rootfs = make_rootfs()
    try:
        pythons = {"old (f72d2dd)": a.old, "new": sys.executable}
        states = {k: str(work / f"state-{i}") for i, k in enumerate(pythons)}
        where: dict[str, str] = {}
        samples: dict[str, list[float]] = {k: [] for k in pythons}
        per_round: dict[str, list[float]] = {k: [] for k in pythons}
        for r in range(a.rounds):
            order = list(pythons) if r % 2 == 0 else list(reversed(pythons))
            for k in order:
                where[k], got = _loop(pythons[k], rootfs, a.batch, states[k], str(work))
                samples[k] += got
                per_round[k].append(median(got))
        print(f"# run(['/bin/true'], rootfs=R), docker's defaults; {a.rounds} rounds x "
              f"{a.batch} (after 3 warm-up runs per process), order alternating; kernel "
              f"{platform.release()}, {os.cpu_count()} cpus")
        for k in pythons:
            print(f"{k:14} p50 {pct(samples[k], .5) * 1e3:7.3f} ms  p90 "
                  f"{pct(samples[k], .9) * 1e3:7.3f} ms   ({where[k]})")
        old, new = pythons
        diff = median([y - x for x, y in zip(per_round[old], per_round[new], strict=True)])
        p50d = (pct(samples[new], .5) - pct(samples[old], .5)) * 1e3
        print(f"new - old: {p50d:.3f} ms on the p50s, {diff * 1e3:.3f} ms as the median of "
              f"the per-round differences (goal <= {GOAL_MS}: "
              f"{'met' if diff * 1e3 <= GOAL_MS else 'NOT met'})")
        _micro(work, a.micro)
    finally:
        shutil.rmtree(os.path.dirname(rootfs), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
