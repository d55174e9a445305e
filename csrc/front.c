/* nsprim's command on PATH: a small C front end.
 *
 * The CLI is Python: ~12 ms of interpreter start and ~30 ms of imports come
 * before any container work.  This front end sends the common commands to a
 * resident helper of the state root (src/nsprim/helper.py): a Python process
 * with the CLI imported, which forks a child that runs exactly the CLI's
 * main with this process's argv, environment, cwd (an fd), umask, rlimits and
 * fds 0, 1, 2 (SCM_RIGHTS), and answers with its exit status.  Signals this
 * process receives are forwarded to that child (docker's sig-proxy); if this
 * process dies, the helper kills the child, as if the CLI had been killed.
 *
 * Everything else, and every case the helper cannot take
 * (NSPRIM_HELPER_IDLE=0, a rootless default root, a closed fd 0-2, a helper
 * that refuses or cannot start), execs the Python CLI: `nsprim-py` beside this program, else
 * the interpreter (beside this program, else the one recorded at build time,
 * else python3 on PATH).
 *
 * Protocol (SOCK_STREAM, <run dir>/helper.sock, the helper checks
 * SO_PEERCRED and this process checks the helper's):
 *   client -> helper  "NSPH" u32 length, then NUL-terminated strings:
 *                     "1" (version), umask (octal), run dir, argc, argv...,
 *                     envc, env..., then "cur max" for each rlimit;
 *                     fds 0, 1, 2 and the cwd ride on the first byte.
 *   helper -> client  'A' once the child is forked (from then on, no
 *                     fallback: the command has started), or 'R' (refused:
 *                     run the Python CLI instead).
 *   client -> helper  one byte per signal received (its number).
 *   helper -> client  'E' + 4 bytes exit code, or 'S' + 4 bytes signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef NSPRIM_PYTHON
#define NSPRIM_PYTHON "python3"
#endif

extern char **environ;

#define SOCK_NAME "helper.sock"
#define IDLE_DEFAULT "60"
#define MAX_REQUEST (1u << 20) /* what the helper accepts, too */

/* the commands the helper runs; the rest exec Python */
static const char *const FAST[] = {
    "run", "create", "exec", "start", "stop", "restart", "kill", "rm", "ps", "logs",
    "inspect", "wait", "images", "port", "top", "pause", "unpause", "rename", "network", NULL,
};
static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
#define NFORWARDED ((int)(sizeof(FORWARDED) / sizeof(FORWARDED[0])))

static char self_dir[PATH_MAX];
static volatile int helper_sock = -1;

static const char PY_CLI[] =
    "import sys\n"
    "if sys.path and sys.path[0] in ('', '.'): del sys.path[0]\n"
    "from nsprim.cli import main\n"
    "sys.exit(main())\n";
static const char PY_HELPER[] =
    "import sys\n"
    "if sys.path and sys.path[0] in ('', '.'): del sys.path[0]\n"
    "from nsprim.helper import main\n"
    "sys.exit(main(sys.argv[1:]))\n";

static void find_self_dir(void) {
    ssize_t n = readlink("/proc/self/exe", self_dir, sizeof(self_dir) - 1);
    if (n <= 0) {
        self_dir[0] = 0;
        return;
    }
    self_dir[n] = 0;
    char *slash = strrchr(self_dir, '/');
    if (slash)
        *slash = 0;
    else
        self_dir[0] = 0;
}

/* The interpreter: beside this program (a venv's bin), else the one the
 * package was built with, else python3 on PATH. */
static const char *python(void) {
    static char buf[PATH_MAX + 16];
    const char *names[] = {"python3", "python"};
    for (int i = 0; i < 2 && self_dir[0]; i++) {
        if (snprintf(buf, sizeof(buf), "%s/%s", self_dir, names[i]) < (int)sizeof(buf) &&
            access(buf, X_OK) == 0)
            return buf;
    }
    if (NSPRIM_PYTHON[0] == '/' && access(NSPRIM_PYTHON, X_OK) == 0)
        return NSPRIM_PYTHON;
    return "python3";
}

static void exec_python(char **args, const char *code) {
    const char *py = python();
    int n = 0;
    while (args[n])
        n++;
    char **v = calloc((size_t)n + 4, sizeof(char *));
    if (!v) {
        fputs("nsprim: out of memory\n", stderr);
        _exit(125);
    }
    v[0] = (char *)py;
    v[1] = "-c";
    v[2] = (char *)code;
    for (int i = 0; i < n; i++)
        v[3 + i] = args[i];
    v[3 + n] = NULL;
    execvp(py, v);
    fprintf(stderr, "nsprim: cannot run the Python interpreter %s: %s\n", py, strerror(errno));
    _exit(127);
}

/* The Python CLI itself, for what the front end does not take. */
static void fallback(int argc, char **argv) {
    char path[PATH_MAX + 16];
    if (helper_sock >= 0)
        close(helper_sock);
    if (self_dir[0] && snprintf(path, sizeof(path), "%s/nsprim-py", self_dir) < (int)sizeof(path) &&
        access(path, X_OK) == 0) {
        argv[0] = path;
        execv(path, argv);
    }
    (void)argc;
    exec_python(argv + 1, PY_CLI);
}

/* ---- the request ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static int put(struct buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > MAX_REQUEST)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->p[b->len + n] = 0;
    b->len += n + 1;
    return 0;
}

static int puts0(struct buf *b, const char *s) { return put(b, s, strlen(s)); }

static int putf(struct buf *b, const char *fmt, unsigned long long a, unsigned long long c) {
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), fmt, a, c);
    return put(b, tmp, (size_t)n);
}

static int build_request(struct buf *b, const char *run, int argc, char **argv) {
    mode_t um = umask(0);
    umask(um);
    int envc = 0;
    for (char **e = environ; *e; e++)
        envc++;
    if (put(b, "NSPH\0\0\0", 8) < 0) /* magic and a length, filled in below */
        return -1;
    b->len = 8;
    if (puts0(b, "1") < 0 || putf(b, "%llo", um, 0) < 0 || puts0(b, run) < 0 ||
        putf(b, "%llu", (unsigned long long)argc - 1, 0) < 0)
        return -1;
    for (int i = 1; i < argc; i++)
        if (puts0(b, argv[i]) < 0)
            return -1;
    if (putf(b, "%llu", (unsigned long long)envc, 0) < 0)
        return -1;
    for (char **e = environ; *e; e++)
        if (puts0(b, *e) < 0)
            return -1;
    for (int r = 0; r < RLIM_NLIMITS; r++) {
        struct rlimit rl;
        if (getrlimit(r, &rl) < 0)
            rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
        if (putf(b, "%llu %llu", (unsigned long long)rl.rlim_cur,
                 (unsigned long long)rl.rlim_max) < 0)
            return -1;
    }
    uint32_t len = (uint32_t)(b->len - 8);
    memcpy(b->p + 4, &len, 4);
    return 0;
}

static int send_request(int s, struct buf *b) {
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0)
        return -1;
    int fds[4] = {0, 1, 2, cwd};
    char cbuf[CMSG_SPACE(sizeof(fds))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {.iov_base = b->p, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(c), fds, sizeof(fds));
    ssize_t n;
    do
        n = sendmsg(s, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    close(cwd);
    if (n != 1)
        return -1;
    size_t off = 1;
    while (off < b->len) {
        n = send(s, b->p + off, b->len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

/* ---- the helper's socket ---- */

static int connect_helper(const char *run) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int dirfd = -1;
    if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", run, SOCK_NAME) >=
        (int)sizeof(sa.sun_path)) {
        /* too long for sun_path: reach it through an O_PATH fd of its directory */
        dirfd = open(run, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
            return -1;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dirfd, SOCK_NAME);
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        if (dirfd >= 0)
            close(dirfd);
        return -1;
    }
    int r;
    do
        r = connect(s, (struct sockaddr *)&sa, sizeof(sa));
    while (r < 0 && errno == EINTR);
    int saved = errno;
    if (dirfd >= 0)
        close(dirfd);
    if (r < 0) {
        close(s);
        errno = saved;
        return -1;
    }
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 || cred.uid != geteuid()) {
        close(s); /* not our helper: the Python CLI judges the root */
        errno = EPERM;
        return -1;
    }
    return s;
}

/* The environment the helper starts with: what the interpreter and nsprim's
 * imports read, nothing else. */
static void clean_env(void) {
    static const char *const keep[] = {"PATH=", "HOME=", "LANG=", "LC_", "PYTHON", "NSPRIM_",
                                       "VIRTUAL_ENV=", "TMPDIR=", "XDG_", NULL};
    char **out = environ;
    for (char **e = environ; *e; e++)
        for (int k = 0; keep[k]; k++)
            if (strncmp(*e, keep[k], strlen(keep[k])) == 0) {
                *out++ = *e;
                break;
            }
    *out = NULL;
}

/* Start the helper (detached: its own session, fds 0-2 /dev/null) and wait
 * until it listens ('1'), or finds another one starting ('2'); what it wrote,
 * 0 if it failed. */
static char start_helper(const char *run, const char *idle) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return 0;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return 0;
    }
    if (pid == 0) {
        if (setsid() < 0 || fork() != 0)
            _exit(0);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 ||
            dup2(p[1], 3) < 0)
            _exit(1);
        syscall(SYS_close_range, 4U, ~0U, 0U);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (chdir("/") < 0)
            _exit(1);
        clean_env(); /* no caller's secret stays in the helper: each request brings its own */
        char *args[] = {"--run", (char *)run, "--idle", (char *)idle, "--ready-fd", "3", NULL};
        exec_python(args, PY_HELPER);
    }
    close(p[1]);
    waitpid(pid, NULL, 0);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    char c = 0;
    if (poll(&pf, 1, 10000) > 0) {
        ssize_t n;
        do
            n = read(p[0], &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
            c = 0;
    }
    close(p[0]);
    return c;
}

/* The run dir, as nsprim.state picks it; NULL when the front end does not
 * know it (rootless defaults): the Python CLI then. */
static char *run_dir(const char *root) {
    static char buf[PATH_MAX];
    if (root) {
        if (root[0] == '/') {
            if (snprintf(buf, sizeof(buf), "%s/run", root) >= (int)sizeof(buf))
                return NULL;
        } else {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof(cwd)))
                return NULL;
            if (snprintf(buf, sizeof(buf), "%s/%s/run", cwd, root) >= (int)sizeof(buf))
                return NULL;
        }
        return buf;
    }
    const char *e = getenv("NSPRIM_RUN");
    const char *r = getenv("NSPRIM_ROOT");
    if ((e && *e) || (r && *r)) {
        if (snprintf(buf, sizeof(buf), (e && *e) ? "%s" : "%s/run", (e && *e) ? e : r) >=
            (int)sizeof(buf))
            return NULL;
        if (buf[0] != '/') { /* relative: to our cwd (the helper's is /) */
            char cwd[PATH_MAX], rel[PATH_MAX];
            strcpy(rel, buf);
            if (!getcwd(cwd, sizeof(cwd)) ||
                snprintf(buf, sizeof(buf), "%s/%s", cwd, rel) >= (int)sizeof(buf))
                return NULL;
        }
        return buf;
    }
    return geteuid() == 0 ? strcpy(buf, "/run/nsprim") : NULL;
}

static void forward(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (helper_sock >= 0)
        (void)!send(helper_sock, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    errno = saved;
}

static int read_full(int s, void *p, size_t n) {
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(s, (char *)p + off, n - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        off += (size_t)r;
    }
    return 0;
}

static int fast_command(const char *cmd) {
    for (int i = 0; FAST[i]; i++)
        if (strcmp(cmd, FAST[i]) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv) {
    find_self_dir();
    /* [--root DIR | --root=DIR]... COMMAND */
    const char *root = NULL;
    int i = 1;
    while (i < argc) {
        if (strcmp(argv[i], "--root") == 0 && i + 1 < argc) {
            root = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--root=", 7) == 0) {
            root = argv[i] + 7;
            i++;
        } else
            break;
    }
    if (i >= argc || !fast_command(argv[i]) || (root && !*root))
        fallback(argc, argv);
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0)
            fallback(argc, argv); /* a closed 0-2: keep it closed, as Python would */
    const char *idle = getenv("NSPRIM_HELPER_IDLE");
    if (!idle || !*idle)
        idle = IDLE_DEFAULT;
    if (strcmp(idle, "0") == 0)
        fallback(argc, argv); /* no helper: the Python CLI runs every command */
    char *run = run_dir(root);
    if (!run)
        fallback(argc, argv);
    int s = connect_helper(run);
    if (s < 0 && (errno == ENOENT || errno == ECONNREFUSED)) {
        struct stat st;
        if (stat(run, &st) == 0 || errno == ENOENT) {
            char got = start_helper(run, idle);
            /* listening: one connect; another is starting: wait for it (2 s) */
            int tries = got == '1' ? 1 : got == '2' ? 100 : 0;
            for (; tries > 0 && s < 0; tries--) {
                s = connect_helper(run);
                if (s < 0) {
                    struct timespec ts = {0, 20 * 1000 * 1000};
                    nanosleep(&ts, NULL);
                }
            }
        }
    }
    if (s < 0)
        fallback(argc, argv);
    helper_sock = s;
    struct buf b = {0};
    if (build_request(&b, run, argc, argv) < 0 || send_request(s, &b) < 0)
        fallback(argc, argv);
    free(b.p);
    /* from here on, our signals are the child's */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigset_t block, old;
    sigemptyset(&block);
    for (int k = 0; k < NFORWARDED; k++)
        sigaddset(&block, FORWARDED[k]);
    /* until the child exists, a signal waits (then goes to it) */
    sigprocmask(SIG_BLOCK, &block, &old);
    for (int k = 0; k < NFORWARDED; k++)
        sigaction(FORWARDED[k], &sa, NULL);
    char ack;
    if (read_full(s, &ack, 1) < 0 || ack != 'A') {
        /* refused or gone before the child was forked: nothing ran */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        for (int k = 0; k < NFORWARDED; k++)
            sigaction(FORWARDED[k], &dfl, NULL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        fallback(argc, argv);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    unsigned char res[5];
    if (read_full(s, res, 5) < 0) {
        fputs("nsprim: the helper ended before the command did\n", stderr);
        return 125;
    }
    int32_t v;
    memcpy(&v, res + 1, 4);
    if (res[0] == 'S' && v > 0 && v < 65) {
        /* killed by a signal: so are we (as the CLI process would be) */
        signal(v, SIG_DFL);
        sigset_t un;
        sigemptyset(&un);
        sigaddset(&un, v);
        sigprocmask(SIG_UNBLOCK, &un, NULL);
        kill(getpid(), v);
        return 128 + v;
    }
    return res[0] == 'E' ? v : 125;
}
