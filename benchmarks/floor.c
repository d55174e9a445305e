/* The floor: the least a container start can cost on this machine.
 *
 * clone3 with new pid, mount, uts, ipc and net namespaces; the child makes
 * mounts private, bind-mounts the rootfs, mounts /proc, pivot_root(".", "."),
 * detaches the old root and execs /bin/true; the parent waits.  No error
 * reporting channel, no capabilities, no fds: a raw lower bound.
 *
 * usage: floor ROOTFS N [cgroup-dir]   prints N start-to-exit times in ns
 * With a cgroup v2 directory the child is born in it (CLONE_INTO_CGROUP).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int child(const char *rootfs)
{
    char proc[4096];
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return 1;
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return 2;
    snprintf(proc, sizeof proc, "%s/proc", rootfs);
    if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return 3;
    if (chdir(rootfs) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
        return 4;
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return 5;
    char *argv[] = {"/bin/true", NULL};
    char *envp[] = {"PATH=/bin", NULL};
    execve(argv[0], argv, envp);
    return 127;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ROOTFS N [CGROUP_DIR]\n", argv[0]);
        return 2;
    }
    const char *rootfs = argv[1];
    int n = atoi(argv[2]);
    int cgfd = -1;
    if (argc > 3) {
        cgfd = open(argv[3], O_DIRECTORY | O_PATH | O_CLOEXEC);
        if (cgfd < 0) {
            perror("open cgroup");
            return 1;
        }
    }
    for (int i = 0; i < n; i++) {
        struct timespec a, b;
        struct clone_args ca;
        int status;
        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
        ca.exit_signal = SIGCHLD;
        if (cgfd >= 0) {
            ca.flags |= CLONE_INTO_CGROUP;
            ca.cgroup = (uint64_t)cgfd;
        }
        clock_gettime(CLOCK_MONOTONIC, &a);
        long pid = syscall(SYS_clone3, &ca, sizeof ca);
        if (pid < 0) {
            perror("clone3");
            return 1;
        }
        if (pid == 0)
            _exit(child(rootfs));
        if (waitpid((pid_t)pid, &status, 0) < 0) {
            perror("waitpid");
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "child failed: status %d\n", status);
            return 1;
        }
        printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    }
    return 0;
}
