/* The spawn engine.  See spawn.h for the protocol.
 *
 * Everything that runs in the child (child_*) is async-signal-safe: raw system
 * calls, stack buffers, no allocation.  It may not return to the caller.
 */
#define _GNU_SOURCE
#include "syscalls.h"
#include "spawn.h"

#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define CHILD_PATH_MAX 4096

struct child_ctx {
    struct nsp_msg *report;  /* shared with the parent (CLONE_VM), or NULL */
    int placed;              /* born in the cgroup given to clone3 */
    int pty_slave;           /* from NSP_OP_PTY: becomes 0, 1 and 2 in NSP_OP_FDS */
    int sync_fd;
    int exec_fd;      /* the sealed exec helper (nsprim-init), or -1 */
    int root_fd;      /* the container's root directory (O_PATH), or -1 */
    int what;         /* which call of the current op runs (enum nsp_what) */
    const struct nsp_op *ops;
    int nops;
};

/* ---------------------------------------------------------------- helpers */

static size_t c_strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* Copy src into dst (size n); returns 0, or -1 with ENAMETOOLONG. */
static int c_strcpy(char *dst, size_t n, const char *src)
{
    size_t len = c_strlen(src);
    if (len + 1 > n) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dst, src, len + 1);
    return 0;
}

/* "/proc/self/fd/<fd>" into buf */
static void fd_path(char *buf, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[16];
    int n = 0;
    size_t p = sizeof prefix - 1;
    memcpy(buf, prefix, p);
    do {
        digits[n++] = (char)('0' + fd % 10);
        fd /= 10;
    } while (fd > 0);
    while (n > 0)
        buf[p++] = digits[--n];
    buf[p] = '\0';
}

static int send_msg(int fd, int type, int err, int index, int what)
{
    struct nsp_msg m;
    ssize_t n;
    m.type = type;
    m.err = err;
    m.index = index;
    m.what = what;
    do {
        n = send(fd, &m, sizeof m, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof m ? 0 : -1;
}

static __attribute__((noreturn)) void child_fail(struct child_ctx *c, int index)
{
    int err = errno;
    if (c->report != NULL) {
        /* the parent sleeps until we exit (CLONE_VFORK), then reads this */
        c->report->type = NSP_MSG_ERROR;
        c->report->err = err;
        c->report->index = index;
        c->report->what = c->what;
    }
    if (c->sync_fd >= 0)
        send_msg(c->sync_fd, NSP_MSG_ERROR, err, index, c->what);
    _exit(NSP_EXIT_SETUP);
}

static int close_keep_errno(int fd, int r)
{
    int saved = errno;
    close(fd);
    errno = saved;
    return r;
}

/* Open `rel` (a path inside the container's root) as an O_PATH fd.  Symlinks
 * and ".." are resolved as if the root were "/", so nothing in the rootfs can
 * point a mount outside it.  `create` (NSP_F_MKDIR / NSP_F_MKFILE) makes the
 * missing components: directories, and a directory or file last. */
static int open_in_root(struct child_ctx *c, const char *rel, int create)
{
    const uint64_t resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    char path[CHILD_PATH_MAX];
    size_t len, i;
    int fd, pfd;

    c->what = NSP_WHAT_TARGET;
    while (*rel == '/')
        rel++;
    if (*rel == '\0')
        rel = ".";
    fd = nsp_openat2(c->root_fd, rel, O_PATH | O_CLOEXEC, 0, resolve);
    if (fd >= 0 || errno != ENOENT || !(create & (NSP_F_MKDIR | NSP_F_MKFILE)))
        return fd;

    if (c_strcpy(path, sizeof path, rel) < 0)
        return -1;
    len = c_strlen(path);
    while (len > 0 && path[len - 1] == '/')
        path[--len] = '\0';
    /* walk the components: open each prefix inside the root, make what is missing */
    pfd = nsp_openat2(c->root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0, resolve);
    if (pfd < 0)
        return -1;
    i = 0;
    while (i < len) {
        size_t start = i, end = i;
        int last, r;
        while (end < len && path[end] != '/')
            end++;
        last = end >= len;
        path[end] = '\0';
        if (end == start) {
            i = end + 1;
            continue;
        }
        fd = nsp_openat2(c->root_fd, path, O_PATH | O_CLOEXEC | (last ? 0 : O_DIRECTORY), 0,
                         resolve);
        if (fd < 0 && errno == ENOENT) {
            if (!last || (create & NSP_F_MKDIR))
                r = mkdirat(pfd, path + start, 0755);
            else
                r = mknodat(pfd, path + start, S_IFREG | 0644, 0);
            if (r < 0 && errno != EEXIST)
                return close_keep_errno(pfd, -1);
            fd = nsp_openat2(c->root_fd, path, O_PATH | O_CLOEXEC | (last ? 0 : O_DIRECTORY),
                             0, resolve);
        }
        if (fd < 0)
            return close_keep_errno(pfd, -1);
        close(pfd);
        pfd = fd;
        if (!last)
            path[end] = '/';
        i = end + 1;
    }
    return pfd;
}

/* mount(2) onto a target held as an O_PATH fd */
static int mount_on_fd(const char *src, int fd, const char *fstype,
                       unsigned long flags, const char *data)
{
    char target[64];
    fd_path(target, fd);
    return nsp_mount(src, target, fstype, flags, data);
}

/* Clone the tree at (dfd, path), optionally make it read-only, and attach it
 * on top of target_fd.  Uses the new mount API so that read-only applies to
 * the new mount only and no locked flags need repeating. */
static int bind_tree(struct child_ctx *c, int dfd, const char *path, int target_fd,
                     int flags)
{
    unsigned int otflags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC;
    int tree, r;
    if (flags & NSP_F_REC)
        otflags |= AT_RECURSIVE;
    if (path[0] == '\0')
        otflags |= AT_EMPTY_PATH;
    c->what = NSP_WHAT_SOURCE;
    tree = nsp_open_tree(dfd, path, otflags);
    if (tree < 0)
        return -1;
    c->what = NSP_WHAT_SETATTR;
    if (flags & (NSP_F_RDONLY | NSP_F_NODEV)) {
        uint64_t attr = ((flags & NSP_F_RDONLY) ? MOUNT_ATTR_RDONLY : 0) |
                        ((flags & NSP_F_NODEV) ? MOUNT_ATTR_NODEV : 0);
        r = nsp_mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, attr, 0, 0, 0);
        if (r < 0)
            goto out;
    }
    c->what = NSP_WHAT_ATTACH;
    r = nsp_move_mount(tree, "", target_fd, "",
                       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
out:
    {
        int saved = errno;
        close(tree);
        errno = saved;
    }
    return r;
}

/* ------------------------------------------------------------------ ops */

static int op_sync(struct child_ctx *c)
{
    struct nsp_msg m;
    ssize_t n;
    if (send_msg(c->sync_fd, NSP_MSG_READY, 0, 0, 0) < 0)
        return -1;
    do {
        n = recv(c->sync_fd, &m, sizeof m, 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof m || m.type != NSP_MSG_GO) {
        /* the parent gave up on us */
        _exit(NSP_EXIT_SETUP);
    }
    return 0;
}

static int op_root(struct child_ctx *c, const struct nsp_op *op)
{
    if (nsp_mount(op->src, op->src, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -1;
    c->root_fd = open(op->src, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (c->root_fd < 0)
        return -1;
    /* device nodes in the image (or made by the container) open nowhere in it */
    if (op->flags & NSP_F_NODEV)
        return nsp_mount_setattr(c->root_fd, "", AT_EMPTY_PATH | AT_RECURSIVE,
                                 MOUNT_ATTR_NODEV, 0, 0, 0);
    return 0;
}

/* /proc of another pid namespace (op->fd) than ours: procfs's "pidns"
 * parameter (Linux 6.15+) through the new mount API.  Used when the child
 * joins a running container's pid namespace only for its children (see
 * plan.py), so /proc shows the container's processes, not the host's. */
static int mount_proc_of(int target, const struct nsp_op *op)
{
    unsigned int attr = 0;
    int fs, mnt, r;
    fs = nsp_fsopen("proc", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    if (nsp_fsconfig(fs, FSCONFIG_SET_FD, "pidns", NULL, op->fd) < 0 ||
        nsp_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return close_keep_errno(fs, -1);
    if (op->mflags & MS_NOSUID)
        attr |= MOUNT_ATTR_NOSUID;
    if (op->mflags & MS_NODEV)
        attr |= MOUNT_ATTR_NODEV;
    if (op->mflags & MS_NOEXEC)
        attr |= MOUNT_ATTR_NOEXEC;
    mnt = nsp_fsmount(fs, FSMOUNT_CLOEXEC, attr);
    close_keep_errno(fs, 0);
    if (mnt < 0)
        return -1;
    r = nsp_move_mount(mnt, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    return close_keep_errno(mnt, r);
}

static int op_mount(struct child_ctx *c, const struct nsp_op *op)
{
    int fd;
    if (c->root_fd < 0 && op->dst[0] == '/') {
        /* before NSP_OP_ROOT there is no root yet: dst is a directory of the
         * host, in our own mount namespace (the overlay of a rootless
         * container, which only its user namespace may mount) */
        c->what = NSP_WHAT_TARGET;
        fd = open(op->dst, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    } else {
        fd = open_in_root(c, op->dst, op->flags);
    }
    if (fd < 0)
        return -1;
    c->what = NSP_WHAT_ATTACH;
    if (op->fd >= 0)
        return close_keep_errno(fd, mount_proc_of(fd, op));
    return close_keep_errno(fd, mount_on_fd(op->src, fd, op->fstype, op->mflags, op->data));
}

static int op_bind(struct child_ctx *c, const struct nsp_op *op)
{
    struct stat st;
    int create = op->flags & (NSP_F_MKDIR | NSP_F_MKFILE);
    int fd;
    if (create) {
        c->what = NSP_WHAT_SOURCE;
        if (stat(op->src, &st) < 0)
            return -1;
        create = S_ISDIR(st.st_mode) ? NSP_F_MKDIR : NSP_F_MKFILE;
    }
    fd = open_in_root(c, op->dst, create);
    if (fd < 0)
        return -1;
    return close_keep_errno(fd, bind_tree(c, AT_FDCWD, op->src, fd, op->flags));
}

static int op_mask(struct child_ctx *c, const struct nsp_op *op)
{
    struct stat st;
    int fd = open_in_root(c, op->dst, 0);
    int r;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0)
        return close_keep_errno(fd, -1);
    c->what = NSP_WHAT_ATTACH;
    if (S_ISDIR(st.st_mode))
        r = mount_on_fd("tmpfs", fd, "tmpfs", MS_RDONLY | MS_NODEV | MS_NOSUID, NULL);
    else
        r = mount_on_fd("/dev/null", fd, NULL, MS_BIND, NULL);
    return close_keep_errno(fd, r);
}

static int op_readonly(struct child_ctx *c, const struct nsp_op *op)
{
    int fd = open_in_root(c, op->dst, 0);
    if (fd < 0)
        return -1;
    if (op->flags & NSP_F_REC) /* a path: a read-only recursive bind of itself */
        return close_keep_errno(fd, bind_tree(c, fd, "", fd, NSP_F_REC | NSP_F_RDONLY));
    /* a mount point (the rootfs): that mount alone becomes read-only */
    return close_keep_errno(fd, nsp_mount_setattr(fd, "", AT_EMPTY_PATH, MOUNT_ATTR_RDONLY,
                                                  0, 0, 0));
}

static int op_symlink(struct child_ctx *c, const struct nsp_op *op)
{
    /* the link's parent must exist; resolve it safely, then symlinkat */
    char parent[CHILD_PATH_MAX];
    const char *rel = op->dst, *base;
    size_t len;
    int pfd, r;
    while (*rel == '/')
        rel++;
    if (c_strcpy(parent, sizeof parent, rel) < 0)
        return -1;
    len = c_strlen(parent);
    while (len > 0 && parent[len - 1] != '/')
        len--;
    base = rel + len;
    if (len == 0) {
        parent[0] = '.';
        parent[1] = '\0';
    } else {
        parent[len - 1] = '\0';
    }
    pfd = nsp_openat2(c->root_fd, parent, O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                      RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    if (pfd < 0)
        return -1;
    r = symlinkat(op->src, pfd, base);
    if (r < 0 && errno == EEXIST)
        r = 0;
    return close_keep_errno(pfd, r);
}

static int op_pivot_root(struct child_ctx *c)
{
    if (fchdir(c->root_fd) < 0)
        return -1;
    if (nsp_pivot_root(".", ".") < 0)
        return -1;
    if (nsp_umount2(".", MNT_DETACH) < 0)
        return -1;
    if (chdir("/") < 0)
        return -1;
    close(c->root_fd);
    c->root_fd = -1;
    return 0;
}

static int op_loopback_up(void)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return close_keep_errno(s, -1);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return close_keep_errno(s, ioctl(s, SIOCSIFFLAGS, &ifr));
}

static int op_cap_bounding(const struct nsp_op *op)
{
    int cap;
    for (cap = 0; cap < 64; cap++) {
        if (op->caps & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) <= 0)
            continue;   /* not in the set, or unknown to this kernel */
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return -1;
    }
    return 0;
}

static int op_caps(const struct nsp_op *op)
{
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];
    memset(&hdr, 0, sizeof hdr);
    memset(data, 0, sizeof data);
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    hdr.pid = 0;
    data[0].effective = data[0].permitted = (uint32_t)(op->caps & 0xffffffffu);
    data[1].effective = data[1].permitted = (uint32_t)(op->caps >> 32);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    return (int)syscall(SYS_capset, &hdr, data);
}

static int op_setid(const struct nsp_op *op)
{
    /* keep the permitted set across the uid change; NSP_OP_CAPS follows */
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return -1;
    if (syscall(SYS_setresgid, op->gid, op->gid, op->gid) < 0)
        return -1;
    if (syscall(SYS_setresuid, op->uid, op->uid, op->uid) < 0)
        return -1;
    return prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
}

static int op_fds(struct child_ctx *c, const struct nsp_op *op)
{
    /* Move every source (and the sync socket and the exec helper) above the
     * targets first, so that no dup2 clobbers a source still needed; then
     * the sources become 0..n-1, the sync socket n, the exec helper next,
     * and every other fd is closed -- not just marked close-on-exec: from
     * here on nothing the child holds points outside the container, so the
     * working directory and the command are resolved with no way back to
     * the host through /proc/self/fd.  The sync socket stays open across
     * the helper's exec (it marks it close-on-exec itself); without the
     * helper it closes on our execve. */
    int tmp[256];
    int i, n = op->nids, base = n + 2, next = n, sync = -1, exe = -1;
    if (n > 256) {
        errno = EMFILE;
        return -1;
    }
    for (i = 0; i < n; i++) {
        int src = i < 3 && c->pty_slave >= 0 ? c->pty_slave : (int)op->ids[i];
        tmp[i] = fcntl(src, F_DUPFD_CLOEXEC, base);
        if (tmp[i] < 0)
            return -1;
    }
    if (c->sync_fd >= 0 && (sync = fcntl(c->sync_fd, F_DUPFD_CLOEXEC, base)) < 0)
        return -1;
    if (c->exec_fd >= 0 && (exe = fcntl(c->exec_fd, F_DUPFD_CLOEXEC, base)) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (dup2(tmp[i], i) < 0)
            return -1;
    }
    if (sync >= 0) {
        if (dup3(sync, next, c->exec_fd >= 0 ? 0 : O_CLOEXEC) < 0)
            return -1;
        c->sync_fd = next++;
    }
    if (exe >= 0) {
        if (dup3(exe, next, O_CLOEXEC) < 0)
            return -1;
        c->exec_fd = next++;
    }
    if (nsp_close_range((unsigned int)next, ~0U, 0) < 0) {
        /* kernels before 5.9 */
        int fd;
        for (fd = next; fd < 65536; fd++)
            close(fd);
    }
    c->pty_slave = -1;
    c->root_fd = -1;
    return 0;
}

/* The working directory, resolved inside the container's root (as if it were
 * "/"): neither "..", nor a symlink, nor a magic link such as
 * /proc/self/fd/N or /proc/1/cwd can lead out of it. */
static int op_chdir(const struct nsp_op *op)
{
    const char *rel = op->dst;
    int root, fd, r;
    while (*rel == '/')
        rel++;
    if (*rel == '\0')
        rel = ".";
    root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -1;
    fd = nsp_openat2(root, rel, O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                     RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    close_keep_errno(root, 0);
    if (fd < 0)
        return -1;
    r = fchdir(fd);
    return close_keep_errno(fd, r);
}

/* A working directory that is not there: its parents are made inside the
 * root (open_in_root), then the last part with mkdirat in the parent we
 * hold.  Only a directory made here is chowned, and it is opened again from
 * that parent without following a link: never "." or ".." (-w /new/..
 * would chown the root, or a volume's source), never what a process of
 * another container sharing a volume swapped in for it (a symlink to /etc).
 * Anything else is left as it is: chdir says if it is no directory. */
static int op_workdir(struct child_ctx *c, const struct nsp_op *op)
{
    char parent[CHILD_PATH_MAX], name[256];
    size_t len, start;
    int fd, pfd, r;

    fd = open_in_root(c, op->dst, 0);
    if (fd >= 0)
        return close_keep_errno(fd, 0);
    if (errno != ENOENT)
        return -1;
    if (c_strcpy(parent, sizeof parent, op->dst) < 0)
        return -1;
    len = c_strlen(parent);
    while (len > 0 && parent[len - 1] == '/')
        len--;
    start = len;
    while (start > 0 && parent[start - 1] != '/')
        start--;
    if (len == start)   /* "/": there */
        return 0;
    if (len - start >= sizeof name) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(name, parent + start, len - start);
    name[len - start] = '\0';
    parent[start] = '\0';   /* "" (the root) or ".../" */
    pfd = open_in_root(c, parent, NSP_F_MKDIR);
    if (pfd < 0)
        return -1;
    if (mkdirat(pfd, name, 0755) < 0)   /* "." and ".." are there (EEXIST) */
        return close_keep_errno(pfd, errno == EEXIST ? 0 : -1);
    fd = openat(pfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close_keep_errno(pfd, 0);
    if (fd < 0)   /* no longer what we made: leave it, chdir decides */
        return 0;
    r = fchownat(fd, "", op->uid, op->gid, AT_EMPTY_PATH);
    return close_keep_errno(fd, r);
}

static int op_seccomp(const struct nsp_op *op)
{
    struct sock_fprog prog;
    prog.len = (unsigned short)op->arg;
    prog.filter = (struct sock_filter *)(uintptr_t)op->data;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static int op_session_keyring(void)
{
    /* a new, empty session keyring: no key of the host's session is reachable */
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 && errno != ENOSYS)
        return -1;
    return 0;
}

static int op_exec(struct child_ctx *c, const struct nsp_op *op)
{
    sigset_t none;

    if (c->exec_fd >= 0) {
        /* the sealed helper execs the command (argv is the helper's: it
         * searches PATH and unblocks signals) */
        syscall(SYS_execveat, c->exec_fd, "", op->argv, op->envp, AT_EMPTY_PATH);
        return -1;
    }
    /* without the helper (a caller of the C engine of its own): argv[0] is
     * the path to exec */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (op->argv[0] == NULL || op->argv[0][0] == '\0') {
        errno = ENOENT;
        return -1;
    }
    execve(op->argv[0], op->argv, op->envp);
    return -1;
}

/* a terminal of the container's own devpts: master to the parent, slave kept */
static int op_pty(struct child_ctx *c)
{
    struct msghdr mh;
    struct iovec iov;
    struct nsp_msg m;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct cmsghdr *cm;
    int unlock = 0, master, slave;
    ssize_t n;

    master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return -1;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        return close_keep_errno(master, -1);
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        return close_keep_errno(master, -1);
    memset(&m, 0, sizeof m);
    m.type = NSP_MSG_PTY;
    memset(&mh, 0, sizeof mh);
    memset(&ctl, 0, sizeof ctl);
    iov.iov_base = &m;
    iov.iov_len = sizeof m;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof ctl.buf;
    cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &master, sizeof(int));
    do {
        n = sendmsg(c->sync_fd, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    close(master);
    if (n < 0)
        return close_keep_errno(slave, -1);
    c->pty_slave = slave;
    return 0;
}

static int op_write_file(const struct nsp_op *op)
{
    size_t len = c_strlen(op->data);
    ssize_t n;
    int fd = open(op->src, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    do {
        n = write(fd, op->data, len);
    } while (n < 0 && errno == EINTR);
    if (n >= 0 && (size_t)n != len) {
        errno = EIO;
        n = -1;
    }
    return close_keep_errno(fd, n < 0 ? -1 : 0);
}

/* Tell the parent we are created, then wait for `start`'s byte on the FIFO.
 * We hold the FIFO read-write, so it never reads EOF while we wait; a parent
 * that goes away does not end the wait (the OCI runtime's `create` exits
 * here); only `start` (a byte) or a signal that kills us does. */
static int op_wait_start(struct child_ctx *c, const struct nsp_op *op)
{
    char b;
    ssize_t n;
    if (send_msg(c->sync_fd, NSP_MSG_CREATED, 0, 0, 0) < 0)
        return -1;
    do {
        n = read(op->fd, &b, 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0) {
        errno = EPIPE;
        return -1;
    }
    close(op->fd);
    return 0;
}

struct child_start {
    const struct nsp_spawn_args *args;
    struct nsp_msg *report;   /* where a CLONE_VM child reports failure, or NULL */
    int placed;               /* born in args->cgroup_fd (CLONE_INTO_CGROUP) */
};

static void child_main(const struct child_start *st)
{
    const struct nsp_spawn_args *a = st->args;
    struct child_ctx c;
    struct sigaction sa;
    int i, r;

    /* only the parent may hold its end: then its exit is our EOF */
    if (a->parent_fd >= 0)
        close(a->parent_fd);
    c.report = st->report;
    c.placed = st->placed;
    c.pty_slave = -1;
    c.sync_fd = a->sync_fd;
    c.exec_fd = a->exec_fd;
    c.root_fd = -1;
    c.what = NSP_WHAT_OP;
    c.ops = a->ops;
    c.nops = a->nops;

    /* Python's handlers are meaningless here: reset all to the default (this
     * also undoes Python's SIG_IGN of SIGPIPE) while signals are blocked. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (i = 1; i < NSIG; i++)
        sigaction(i, &sa, NULL);

    for (i = 0; i < a->nops; i++) {
        const struct nsp_op *op = &a->ops[i];
        c.what = NSP_WHAT_OP;
        switch (op->kind) {
        case NSP_OP_SETNS:
            r = nsp_setns(op->fd, op->arg);
            break;
        case NSP_OP_UNSHARE:
            r = nsp_unshare(op->arg);
            break;
        case NSP_OP_SYNC:
            r = op_sync(&c);
            break;
        case NSP_OP_MOUNT_PROPAGATION:
            r = nsp_mount(NULL, "/", NULL, MS_REC | op->mflags, NULL);
            break;
        case NSP_OP_ROOT:
            r = op_root(&c, op);
            break;
        case NSP_OP_MOUNT:
            r = op_mount(&c, op);
            break;
        case NSP_OP_BIND:
            r = op_bind(&c, op);
            break;
        case NSP_OP_MASK:
            r = op_mask(&c, op);
            break;
        case NSP_OP_READONLY:
            r = op_readonly(&c, op);
            break;
        case NSP_OP_SYMLINK:
            r = op_symlink(&c, op);
            break;
        case NSP_OP_PIVOT_ROOT:
            r = op_pivot_root(&c);
            break;
        case NSP_OP_HOSTNAME:
            r = nsp_sethostname(op->src, c_strlen(op->src));
            break;
        case NSP_OP_DOMAINNAME:
            r = nsp_setdomainname(op->src, c_strlen(op->src));
            break;
        case NSP_OP_LOOPBACK_UP:
            r = op_loopback_up();
            break;
        case NSP_OP_CAP_BOUNDING:
            r = op_cap_bounding(op);
            break;
        case NSP_OP_SETGROUPS:
            r = (int)syscall(SYS_setgroups, (size_t)op->nids, op->ids);
            break;
        case NSP_OP_SETID:
            r = op_setid(op);
            break;
        case NSP_OP_CAPS:
            r = op_caps(op);
            break;
        case NSP_OP_NO_NEW_PRIVS:
            r = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            break;
        case NSP_OP_FDS:
            r = op_fds(&c, op);
            break;
        case NSP_OP_WORKDIR:
            r = op_workdir(&c, op);
            break;
        case NSP_OP_CHDIR:
            r = op_chdir(op);
            break;
        case NSP_OP_EXEC:
            r = op_exec(&c, op);
            break;
        case NSP_OP_SETSID:
            r = setsid() < 0 ? -1 : 0;
            break;
        case NSP_OP_PDEATHSIG:
            r = prctl(PR_SET_PDEATHSIG, op->arg, 0, 0, 0);
            break;
        case NSP_OP_RLIMIT:
            if (op->nids != 4) {
                errno = EINVAL;
                r = -1;
            } else {
                struct rlimit rl;
                rl.rlim_cur = ((rlim_t)op->ids[1] << 32) | op->ids[0];
                rl.rlim_max = ((rlim_t)op->ids[3] << 32) | op->ids[2];
                r = setrlimit(op->arg, &rl);
            }
            break;
        case NSP_OP_WRITE_FILE:
            r = (op->flags & NSP_F_UNLESS_PLACED) && c.placed ? 0 : op_write_file(op);
            break;
        case NSP_OP_NONDUMPABLE:
            r = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
            break;
        case NSP_OP_CTTY:
            r = ioctl(0, TIOCSCTTY, 0);
            break;
        case NSP_OP_SECCOMP:
            r = op_seccomp(op);
            break;
        case NSP_OP_SESSION_KEYRING:
            r = op_session_keyring();
            break;
        case NSP_OP_PTY:
            r = op_pty(&c);
            break;
        case NSP_OP_WAIT_START:
            r = op_wait_start(&c, op);
            break;

        default:
            errno = EINVAL;
            r = -1;
        }
        if (r < 0) {
            if (errno == ENOENT && (op->flags & NSP_F_OPTIONAL))
                continue;
            child_fail(&c, i);
        }
    }
    /* a plan must end in NSP_OP_EXEC */
    errno = EINVAL;
    child_fail(&c, a->nops - 1);
}

/* ---------------------------------------------------------------- parent */

/* clone3 into `child_main(a)`.
 *
 * Fast path (x86_64 and aarch64, when the parent need not talk to the child
 * before it execs): CLONE_VM | CLONE_VFORK on a stack of its own, as
 * posix_spawn does -- the child shares our memory instead of copying the
 * page tables of a large Python process, and this thread sleeps until the
 * child has exec'd or exited.  The child uses raw syscalls for every credential
 * change, so libc never acts on the parent's threads.
 *
 * Otherwise: fork-like (no CLONE_VM), the child on a copy of our stack.
 */
#define CHILD_STACK_SIZE (256 * 1024)

#if defined(__x86_64__)
#define HAVE_CLONE3_ON_STACK 1
static long clone3_on_stack(struct clone_args *ca, void (*fn)(const struct child_start *),
                            const struct child_start *arg)
{
    long ret;
    register void *r12 __asm__("r12") = (void *)fn;
    register const void *r13 __asm__("r13") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"     /* child: on the new stack */
        "and $-16, %%rsp\n\t"
        "mov %%r13, %%rdi\n\t"
        "call *%%r12\n\t"          /* never returns; exit(127) if it did */
        "mov $60, %%eax\n\t"
        "mov $127, %%edi\n\t"
        "syscall\n\t"
        "hlt\n\t"
        "1:\n\t"
        : "=a"(ret)
        : "0"((long)SYS_clone3), "D"(ca), "S"(sizeof *ca), "r"(r12), "r"(r13)
        : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
#define HAVE_CLONE3_ON_STACK 1
static long clone3_on_stack(struct clone_args *ca, void (*fn)(const struct child_start *),
                            const struct child_start *arg)
{
    register long x0 __asm__("x0") = (long)ca;
    register long x1 __asm__("x1") = (long)sizeof *ca;
    register long x8 __asm__("x8") = SYS_clone3;
    register void *x19 __asm__("x19") = (void *)fn;
    register const void *x20 __asm__("x20") = arg;
    __asm__ volatile(
        "svc #0\n\t"
        "cbnz x0, 1f\n\t"
        "mov x29, #0\n\t"
        "mov x0, x20\n\t"
        "blr x19\n\t"
        "mov x0, #127\n\t"
        "mov x8, #93\n\t"
        "svc #0\n\t"
        "1:\n\t"
        : "+r"(x0)
        : "r"(x1), "r"(x8), "r"(x19), "r"(x20)
        : "memory", "x30");
    return x0;
}
#endif

/* after a fork-like clone: the child runs the plan, the parent keeps the pidfd */
static long fork_result(long pid, int pidfd, const struct child_start *st,
                        struct nsp_spawn_result *res)
{
    if (pid == 0)
        child_main(st);
    if (pid > 0)
        res->pidfd = pidfd;
    return pid;
}

static long do_clone3(const struct nsp_spawn_args *a, struct nsp_spawn_result *res,
                      int with_cgroup, void *stack)
{
    struct clone_args ca;
    struct child_start st;
    int pidfd = -1;
    long pid;
    st.args = a;
    st.report = NULL;
    st.placed = with_cgroup;
    memset(&ca, 0, sizeof ca);
    ca.flags = a->flags | CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = SIGCHLD;
    if (with_cgroup) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)a->cgroup_fd;
    }
#ifdef HAVE_CLONE3_ON_STACK
    if (stack != NULL) {
        ca.flags |= CLONE_VM | CLONE_VFORK;
        ca.stack = (uint64_t)(uintptr_t)stack;
        ca.stack_size = CHILD_STACK_SIZE;
        st.report = &res->report;
        pid = clone3_on_stack(&ca, child_main, &st);
        if (pid < 0) {
            errno = (int)-pid;
            return -1;
        }
        res->pidfd = pidfd;
        res->shared = 1;
        return pid;
    }
#else
    (void)stack;
#endif
    pid = nsp_clone3(&ca, sizeof ca);
    return fork_result(pid, pidfd, &st, res);
}

static long do_clone(const struct nsp_spawn_args *a, struct nsp_spawn_result *res)
{
    int pidfd = -1;
    /* x86_64 argument order: flags, stack, parent_tid, child_tid, tls */
    struct child_start st;
    long pid = syscall(SYS_clone, (unsigned long)(a->flags | CLONE_PIDFD | SIGCHLD),
                       NULL, &pidfd, NULL, NULL);
    st.args = a;
    st.report = NULL;
    st.placed = 0;
    return fork_result(pid, pidfd, &st, res);
}

int nsp_spawn_shares_memory(void)
{
#ifdef HAVE_CLONE3_ON_STACK
    return 1;
#else
    return 0;
#endif
}

/* does the child wait for the parent (NSP_OP_SYNC) before it execs? */
int nsp_plan_needs_parent(const struct nsp_spawn_args *a)
{
    int i;
    for (i = 0; i < a->nops; i++) {
        /* SYNC waits for us; PTY sends a file descriptor over the socket */
        if (a->ops[i].kind == NSP_OP_SYNC || a->ops[i].kind == NSP_OP_PTY ||
            a->ops[i].kind == NSP_OP_WAIT_START)
            return 1;
    }
    return 0;
}

/* PR_SET_DUMPABLE is a flag of the memory (mm), not of a task: a child that
 * shares our memory (CLONE_VM) and sets it for itself (NSP_OP_NONDUMPABLE)
 * makes this whole process non-dumpable.  It must stay set while any such
 * child is between clone and exec (it joins a container's namespaces), and be
 * given back once the last one has exec'd: a count under a lock, the value
 * before the first saved. */
static pthread_mutex_t dumpable_lock = PTHREAD_MUTEX_INITIALIZER;
static int dumpable_users;
static int dumpable_saved;

static int plan_has_op(const struct nsp_spawn_args *a, int kind)
{
    int i;
    for (i = 0; i < a->nops; i++) {
        if (a->ops[i].kind == kind)
            return 1;
    }
    return 0;
}

static void dumpable_enter(void)
{
    pthread_mutex_lock(&dumpable_lock);
    if (dumpable_users++ == 0)
        dumpable_saved = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
}

static void dumpable_leave(void)
{
    pthread_mutex_lock(&dumpable_lock);
    if (--dumpable_users == 0 && dumpable_saved > 0)
        prctl(PR_SET_DUMPABLE, dumpable_saved, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
}

static void restore_ns(const char *path, int nstype)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        nsp_setns(fd, nstype);
        close(fd);
    }
}

int nsp_spawn(const struct nsp_spawn_args *a, struct nsp_spawn_result *res)
{
    sigset_t all, old;
    long pid = -1;
    int err = 0, joined_pid = 0, joined_time = 0, guard_dumpable = 0;
    void *stack = NULL;

    res->pid = -1;
    res->pidfd = -1;
    res->shared = 0;
    memset(&res->report, 0, sizeof res->report);
    res->in_cgroup = 0;
    res->method = 0;

    /* No signal handler may run in the child before it resets them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    /* pid and time namespaces are joined "for children": setns in this
     * thread, clone, then return to our own (always allowed). */
    if (a->pidns_fd >= 0) {
        if (nsp_setns(a->pidns_fd, CLONE_NEWPID) < 0) {
            err = errno;
            goto out;
        }
        joined_pid = 1;
    }
    if (a->timens_fd >= 0) {
        if (nsp_setns(a->timens_fd, CLONE_NEWTIME) < 0) {
            err = errno;
            goto out;
        }
        joined_time = 1;
    }

#ifdef HAVE_CLONE3_ON_STACK
    if (!nsp_plan_needs_parent(a)) {
        stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED)
            stack = NULL;
    }
#endif
    if (stack != NULL && plan_has_op(a, NSP_OP_NONDUMPABLE)) {
        dumpable_enter();
        guard_dumpable = 1;
    }
    if (stack == NULL && a->sync_fd < 0) {
        /* without a shared child the socket is the only way to hear of failure */
        err = stack == NULL && nsp_plan_needs_parent(a) ? EINVAL : ENOMEM;
        goto out;
    }
    if (a->cgroup_fd >= 0) {
        pid = do_clone3(a, res, 1, stack);
        if (pid > 0) {
            res->in_cgroup = 1;
        } else if (errno == E2BIG || errno == EINVAL || errno == EOPNOTSUPP ||
                   errno == EBADF) {
            /* kernel < 5.7, or a cgroup v1 fd: the parent writes cgroup.procs */
            pid = do_clone3(a, res, 0, stack);
        }
    } else {
        pid = do_clone3(a, res, 0, stack);
    }
    if (pid > 0) {
        res->method = 3;
    } else if (errno == ENOSYS && a->sync_fd >= 0) {
        pid = do_clone(a, res);
        if (pid > 0)
            res->method = 2;
    }
    if (pid < 0)
        err = errno;

out:
    /* back to our own pid / time namespace for children (our active ones) */
    if (joined_pid)
        restore_ns("/proc/thread-self/ns/pid", CLONE_NEWPID);
    if (joined_time)
        restore_ns("/proc/thread-self/ns/time", CLONE_NEWTIME);
    if (stack != NULL)
        munmap(stack, CHILD_STACK_SIZE);  /* the child has exec'd or exited */
    if (guard_dumpable)
        dumpable_leave();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        errno = err;
        return -1;
    }
    res->pid = (int)pid;
    return (int)pid;
}
