/* nsprim-init: the last program nsprim runs before a container's command.
 *
 * The spawn engine's child is a clone of the calling Python process until it
 * execs, so an execve("/proc/self/exe") (directly, through a symlink or a
 * "#!" line) from it would run the host's interpreter inside the container.
 * So the child never execs the container's command itself: it execs this
 * helper from a sealed memfd (execveat(fd, "", AT_EMPTY_PATH), see
 * src/nsprim/exe.py), and the helper execs the command.  From then on
 * /proc/self/exe of every process of the container is either the command or
 * this sealed, unwritable copy -- never a host file.
 *
 * It is freestanding (no libc: raw system calls, a few KiB, no dynamic loader)
 * because it is on every container's start-up path.
 *
 * argv: [name, MODE, SYNC_FD, PATH, command...]
 *   MODE     "x": exec the command
 *            "i": fork; the child execs the command; this process stays its
 *                 parent: closes every fd, forwards signals to the child,
 *                 reaps zombies and exits as the child did.  It is PID 1 for
 *                 --init, and the process that stays outside a joined pid
 *                 namespace (exec into a running container: the command is
 *                 born in it, set up; the child dies with us, PDEATHSIG).
 *   SYNC_FD  the spawn engine's socket (decimal), "-" for none: made
 *            close-on-exec, so its EOF tells the parent that the command was
 *            exec'd; a failure is reported on it as a struct nsp_msg
 *            {NSP_MSG_ERROR, errno, -1, NSP_WHAT_EXEC} (see spawn.h).
 *   PATH     where to look for a command without a '/'.
 * The environment is passed on unchanged.  Signals arrive blocked (the spawn
 * engine blocks them across clone); they are unblocked just before the exec.
 */
#include <stddef.h>
#include <stdint.h>
#include <asm/unistd.h>
#include <linux/errno.h>
#include <linux/prctl.h>
#include <linux/fcntl.h>
#include <linux/signal.h>
#include <linux/wait.h>

#include "spawn.h"

#define PATH_BUF 4096

/* ------------------------------------------------------------ syscalls */

#if defined(__x86_64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.globl _start\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call init_main\n  hlt\n");
#elif defined(__aarch64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc #0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
__asm__(".text\n.globl _start\n_start:\n"
        "  mov x29, #0\n  mov x0, sp\n  and sp, x0, #-16\n  bl init_main\n  brk #0\n");
#else
#error "nsprim-init: unsupported architecture"
#endif

#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* the compiler may emit calls to these for struct copies */
void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *s, int c, size_t n)
{
    unsigned char *p = s;
    while (n--)
        *p++ = (unsigned char)c;
    return s;
}
void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *o = d;
    const unsigned char *i = s;
    while (n--)
        *o++ = *i++;
    return d;
}

static __attribute__((noreturn)) void sys_exit(int code)
{
    for (;;)
        sys3(__NR_exit_group, code, 0, 0);
}

static size_t slen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int parse_fd(const char *s)
{
    int v = 0;
    if (s[0] == '-' || s[0] == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static void set_mask(int block)
{
    uint64_t set = block ? ~(uint64_t)0 : 0;
    sys6(__NR_rt_sigprocmask, SIG_SETMASK, (long)&set, 0, sizeof set, 0, 0);
}

/* ---------------------------------------------------------------- exec */

static __attribute__((noreturn)) void fail(int sync_fd, long err)
{
    struct nsp_msg m;
    m.type = NSP_MSG_ERROR;
    m.err = (int32_t)err;
    m.index = -1;
    m.what = NSP_WHAT_EXEC;
    if (sync_fd >= 0)
        sys3(__NR_write, sync_fd, &m, sizeof m);
    sys_exit(err == ENOENT ? 127 : 126);
}

/* execve `argv`, searching PATH when argv[0] has no '/' (execvp's rules:
 * EACCES is remembered and reported if nothing else is found) */
static __attribute__((noreturn)) void run(char **argv, char **envp, const char *path,
                                          int sync_fd)
{
    const char *file = argv[0], *p;
    char buf[PATH_BUF];
    long r, seen_eacces = 0;
    size_t flen;

    if (sync_fd >= 0)
        sys3(__NR_fcntl, sync_fd, F_SETFD, FD_CLOEXEC);
    set_mask(0);
    if (file == NULL || file[0] == '\0')
        fail(sync_fd, ENOENT);
    for (p = file; *p; p++) {
        if (*p == '/')
            fail(sync_fd, -sys3(__NR_execve, file, argv, envp));
    }
    flen = slen(file);
    for (p = path;;) {
        const char *end = p;
        size_t dlen;
        while (*end && *end != ':')
            end++;
        dlen = (size_t)(end - p);
        if (dlen + flen + 2 <= sizeof buf) {
            if (dlen == 0) {
                buf[0] = '.';
                dlen = 1;
            } else {
                memcpy(buf, p, dlen);
            }
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, file, flen + 1);
            r = sys3(__NR_execve, buf, argv, envp);
            if (r == -EACCES)
                seen_eacces = 1;
            else if (r != -ENOENT && r != -ENOTDIR)
                fail(sync_fd, -r);
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }
    fail(sync_fd, seen_eacces ? EACCES : ENOENT);
}

/* ---------------------------------------------------------------- init */

struct ksiginfo {
    int32_t signo;
    int32_t pad[31];
};

static __attribute__((noreturn)) void init(char **argv, char **envp, const char *path,
                                           int sync_fd)
{
    uint64_t all = ~(uint64_t)0;
    struct ksiginfo si;
    long child;

    long parent = sys3(__NR_getpid, 0, 0, 0);

    child = sys6(__NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (child < 0)
        fail(sync_fd, -child);
    if (child == 0) {
        /* SIGKILL cannot be forwarded: die with us.  (A PID 1's children die
         * with its pid namespace anyway.)  getppid() is 0 across a pid
         * namespace boundary, so check only a parent we can see. */
        sys3(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0);
        if (parent != 1) {
            long pp = sys3(__NR_getppid, 0, 0, 0);
            if (pp != 0 && pp != parent)
                sys_exit(137);
        }
        run(argv, envp, path, sync_fd);
    }
    /* PID 1: nothing of ours stays open (the socket's EOF must come from the
     * child's exec).  Every signal stays blocked and is taken with
     * rt_sigtimedwait: blocked signals are queued even for a PID 1 without
     * handlers. */
    if (sys3(__NR_close_range, 0, ~0U, 0) < 0) {
        int fd;
        for (fd = 0; fd < 1024; fd++)
            sys3(__NR_close, fd, 0, 0);
    }
    for (;;) {
        long sig = sys6(__NR_rt_sigtimedwait, (long)&all, (long)&si, 0, sizeof all, 0, 0);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            sys3(__NR_kill, child, sig, 0);
            continue;
        }
        for (;;) {
            int st = 0;
            long p = sys6(__NR_wait4, -1, (long)&st, WNOHANG, 0, 0, 0);
            if (p <= 0)
                break;
            if (p == child) {
                if ((st & 0x7f) == 0)
                    sys_exit((st >> 8) & 0xff);
                sys_exit(128 + (st & 0x7f));
            }
        }
    }
}

__attribute__((noreturn, used)) void init_main(long *sp);
__attribute__((noreturn, used)) void init_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    int sync_fd;

    set_mask(1);
    if (argc < 5)
        sys_exit(125);
    sync_fd = parse_fd(argv[2]);
    if (argv[1][0] == 'i')
        init(argv + 4, envp, argv[3], sync_fd);
    run(argv + 4, envp, argv[3], sync_fd);
}
