/* The floor: the least a container start can cost on this machine.
 *
 * clone3 with new pid, mount, uts, ipc and net namespaces; the child makes
 * mounts private, bind-mounts the rootfs, mounts /proc, pivot_root(".", "."),
 * detaches the old root and execs /bin/true; the parent waits.  No error
 * reporting channel, no capabilities, no fds: a raw lower bound.
 *
 * --full SECCOMP_BPF: the same with docker's defaults, done as cheaply as C
 * can (plain mount(2) on host paths, no checks): a cgroup namespace too; the
 * rootfs nodev (mount_setattr); /proc, a /dev tmpfs (nodev) with null, zero,
 * full, random, urandom and tty bound from the host, devpts, the /dev
 * symlinks, /dev/shm, /dev/mqueue, /sys read-only; docker's masked paths
 * (/dev/null or an empty read-only tmpfs) and read-only paths (recursive
 * binds made read-only with mount_setattr); the hostname, lo up, a new
 * session keyring (keyctl JOIN_SESSION_KEYRING), the seccomp program read
 * from SECCOMP_BPF (a struct sock_filter[], e.g. nsprim's compiled default)
 * installed, the capability bounding set and the capability sets cut to
 * docker's 14, supplementary groups dropped, fds above 2 closed.  It execs
 * /bin/true itself: a C program is no clone of a Python process, so it has
 * no need of nsprim's sealed exec helper.
 *
 * usage: floor [--full SECCOMP_BPF] ROOTFS N [CGROUP_DIR]
 *        prints N start-to-exit times in ns
 * With a cgroup v2 directory the child is born in it (CLONE_INTO_CGROUP).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define F_ATTR_RDONLY 0x1ULL
#define F_ATTR_NODEV 0x4ULL

struct f_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

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


/* ------------------------------------------------------------ --full */

static const char *const MASKED[] = {
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
};
static const char *const READONLY[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};
static const char *const NODES[] = {"null", "zero", "full", "random", "urandom", "tty"};
static const char *const LINKS[][2] = {
    {"/proc/self/fd", "dev/fd"}, {"/proc/self/fd/0", "dev/stdin"},
    {"/proc/self/fd/1", "dev/stdout"}, {"/proc/self/fd/2", "dev/stderr"},
    {"/proc/kcore", "dev/core"}, {"pts/ptmx", "dev/ptmx"},
};

/* docker's 14 default capabilities */
#define CAPS ((1ULL << CAP_CHOWN) | (1ULL << CAP_DAC_OVERRIDE) | (1ULL << CAP_FOWNER) |   \
              (1ULL << CAP_FSETID) | (1ULL << CAP_KILL) | (1ULL << CAP_SETGID) |           \
              (1ULL << CAP_SETUID) | (1ULL << CAP_SETPCAP) | (1ULL << CAP_NET_BIND_SERVICE) | \
              (1ULL << CAP_NET_RAW) | (1ULL << CAP_SYS_CHROOT) | (1ULL << CAP_MKNOD) |     \
              (1ULL << CAP_AUDIT_WRITE) | (1ULL << CAP_SETFCAP))

static struct sock_fprog filter;

static int setattr(const char *path, uint64_t set)
{
    struct f_mount_attr a;
    memset(&a, 0, sizeof a);
    a.attr_set = set;
    return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &a, sizeof a);
}

/* mount at ROOTFS/path (relative), making the mount point if missing */
static int mount_at(const char *rootfs, const char *path, const char *src, const char *fs,
                    unsigned long flags, const char *data)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", rootfs, path);
    if (mount(src, p, fs, flags, data) == 0)
        return 0;
    if (errno != ENOENT || mkdir(p, 0755) < 0)
        return -1;
    return mount(src, p, fs, flags, data);
}

static int child_full(const char *rootfs)
{
    char p[4096], q[4096];
    size_t i;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return 1;
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return 2;
    if (setattr(rootfs, F_ATTR_NODEV) < 0)
        return 3;
    if (mount_at(rootfs, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return 4;
    if (mount_at(rootfs, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME,
                 "mode=755,size=65536k") < 0)
        return 5;
    for (i = 0; i < sizeof NODES / sizeof NODES[0]; i++) {
        snprintf(p, sizeof p, "%s/dev/%s", rootfs, NODES[i]);
        snprintf(q, sizeof q, "/dev/%s", NODES[i]);
        if (mknod(p, S_IFREG | 0644, 0) < 0 || mount(q, p, NULL, MS_BIND, NULL) < 0)
            return 6;
    }
    if (mount_at(rootfs, "dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
        return 7;
    for (i = 0; i < sizeof LINKS / sizeof LINKS[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", rootfs, LINKS[i][1]);
        if (symlink(LINKS[i][0], p) < 0)
            return 8;
    }
    if (mount_at(rootfs, "dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 "mode=1777,size=65536k") < 0)
        return 9;
    if (mount_at(rootfs, "dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 NULL) < 0)
        return 10;
    if (mount_at(rootfs, "sys", "sysfs", "sysfs",
                 MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) < 0)
        return 11;
    for (i = 0; i < sizeof MASKED / sizeof MASKED[0]; i++) {
        struct stat st;
        snprintf(p, sizeof p, "%s%s", rootfs, MASKED[i]);
        if (stat(p, &st) < 0)
            continue; /* optional */
        if (S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NODEV | MS_NOSUID,
                                        NULL) < 0
                                : mount("/dev/null", p, NULL, MS_BIND, NULL) < 0)
            return 12;
    }
    for (i = 0; i < sizeof READONLY / sizeof READONLY[0]; i++) {
        snprintf(p, sizeof p, "%s%s", rootfs, READONLY[i]);
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT)
                continue; /* optional */
            return 13;
        }
        if (setattr(p, F_ATTR_RDONLY) < 0)
            return 13;
    }
    if (chdir(rootfs) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
        return 14;
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return 15;
    if (sethostname("floor", 5) < 0)
        return 16;
    {
        struct ifreq ifr;
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        memset(&ifr, 0, sizeof ifr);
        memcpy(ifr.ifr_name, "lo", 3);
        if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
            return 17;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            return 17;
        close(s);
    }
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0)
        return 18;
    /* no no_new_privs (docker's default): installed while CAP_SYS_ADMIN is held */
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) < 0)
        return 19;
    for (i = 0; i < 64; i++) {
        if (!(CAPS & (1ULL << i)) && prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0 && errno != EINVAL)
            return 20;
    }
    if (setgroups(0, NULL) < 0)
        return 21;
    {
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        memset(data, 0, sizeof data);
        data[0].effective = data[0].permitted = (uint32_t)(CAPS & 0xffffffffu);
        data[1].effective = data[1].permitted = (uint32_t)(CAPS >> 32);
        if (syscall(SYS_capset, &hdr, data) < 0)
            return 22;
    }
    if (syscall(SYS_close_range, 3U, ~0U, 0) < 0)
        return 23;
    char *argv[] = {"/bin/true", NULL};
    char *envp[] = {"PATH=/bin", NULL};
    execve(argv[0], argv, envp);
    return 127;
}

static int load_filter(const char *path)
{
    static struct sock_filter prog[BPF_MAXINSNS];
    FILE *f = fopen(path, "rb");
    size_t n;
    if (f == NULL) {
        perror(path);
        return -1;
    }
    n = fread(prog, sizeof prog[0], BPF_MAXINSNS, f);
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "%s: no seccomp program\n", path);
        return -1;
    }
    filter.len = (unsigned short)n;
    filter.filter = prog;
    return 0;
}

int main(int argc, char **argv)
{
    int full = 0;
    if (argc > 2 && strcmp(argv[1], "--full") == 0) {
        if (load_filter(argv[2]) < 0)
            return 1;
        full = 1;
        argc -= 2;
        argv += 2;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: floor [--full SECCOMP_BPF] ROOTFS N [CGROUP_DIR]\n");
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
        if (full)
            ca.flags |= CLONE_NEWCGROUP;
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
            _exit(full ? child_full(rootfs) : child(rootfs));
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
