/* A static probe run inside containers by the security tests: each mode tries
 * one thing an attacker would, and prints "ok" or the errno's number. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>

static int report(long r)
{
    if (r < 0)
        printf("errno=%d\n", errno);
    else
        printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "ids")) {
        printf("uid=%d euid=%d\n", (int)getuid(), (int)geteuid());
        return 0;
    }
    if (!strcmp(m, "key-search-session")) /* argv[2]: description */
        return report(syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user",
                              argv[2], 0));
    if (!strcmp(m, "key-search-user"))
        return report(syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user",
                              argv[2], 0));
    if (!strcmp(m, "unshare-user"))
        return report(unshare(CLONE_NEWUSER));
    if (!strcmp(m, "clone-newuser")) {
        long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0)
            _exit(0);
        if (pid > 0)
            waitpid((pid_t)pid, NULL, 0);
        return report(pid);
    }
    if (!strcmp(m, "clone3")) {
        char args[88];
        memset(args, 0, sizeof args);
        return report(syscall(SYS_clone3, args, sizeof args) < 0 ? -1 : 1);
    }
    if (!strcmp(m, "io_uring")) {
        char params[120];
        memset(params, 0, sizeof params);
        return report(syscall(SYS_io_uring_setup, 4, params));
    }
    if (!strcmp(m, "perf")) {
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.type = PERF_TYPE_SOFTWARE;
        a.config = PERF_COUNT_SW_CPU_CLOCK;
        a.exclude_kernel = 1;
        return report(syscall(SYS_perf_event_open, &a, 0, -1, -1, 0));
    }
    if (!strcmp(m, "personality-rie"))
        return report(syscall(SYS_personality, READ_IMPLIES_EXEC));
    if (!strcmp(m, "personality-linux"))
        return report(syscall(SYS_personality, PER_LINUX));
    if (!strcmp(m, "open-rw")) { /* argv[2]: a path; prints what it reads */
        char buf[65];
        int fd = open(argv[2], O_RDWR);
        ssize_t n;
        if (fd < 0)
            return report(-1);
        n = read(fd, buf, 64);
        buf[n > 0 ? n : 0] = '\0';
        printf("ok read=%s\n", buf);
        return 0;
    }
    if (!strcmp(m, "open-w"))
        return report(open(argv[2], O_WRONLY));
    if (!strcmp(m, "open-r"))
        return report(open(argv[2], O_RDONLY));
    if (!strcmp(m, "fds")) { /* every fd open at exec, with its target */
        char p[64], t[256];
        int fd;
        for (fd = 0; fd < 1024; fd++) {
            ssize_t n;
            snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
            n = readlink(p, t, sizeof t - 1);
            if (n >= 0) {
                t[n] = '\0';
                printf("%d %s\n", fd, t);
            }
        }
        return 0;
    }
    if (!strcmp(m, "sti")) { /* push a character into the terminal on fd 1's input */
        char c = '#';
        return report(ioctl(1, TIOCSTI, &c));
    }
    if (!strcmp(m, "race-root")) {
        /* argv[2]: seconds; argv[3]: a path relative to / that only the host
         * has.  Spin on the next pid of our pid namespace: a process that
         * joins it before it is inside the container's root would show the
         * host's / through /proc/PID/root. */
        time_t end = time(NULL) + atoi(argv[2]);
        int n = getpid() + 1;
        char p[64];
        while (time(NULL) < end) {
            int fd, f;
            snprintf(p, sizeof p, "/proc/%d/root", n);
            fd = open(p, O_PATH | O_DIRECTORY);
            if (fd >= 0) {
                f = openat(fd, argv[3], O_RDONLY);
                if (f >= 0) {
                    printf("ESCAPED through pid %d\n", n);
                    return 0;
                }
                close(fd);
                n++;
                continue;
            }
            if (errno == ENOENT) {
                snprintf(p, sizeof p, "/proc/%d", n + 1);
                if (access(p, F_OK) == 0)
                    n++;
            }
        }
        printf("done at pid %d\n", n);
        return 0;
    }
    fprintf(stderr, "probe: unknown mode %s\n", m);
    return 2;
}
