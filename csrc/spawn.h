/* The spawn engine: clone3 a child and execute a flat plan in it.
 *
 * Python turns a container's configuration into an array of `struct nsp_op`
 * (see src/nsprim/plan.py).  nsp_spawn() clones the child with the requested
 * namespace flags; the child runs child_main(), which executes the ops one by
 * one using only async-signal-safe system calls (no malloc, no stdio, no
 * Python), then execs.  Every string the ops point to lives in the parent's
 * memory: the child either shares it (CLONE_VM, below) or has a copy.
 *
 * The child never execs the container's command itself: NSP_OP_EXEC execs
 * the sealed helper nsprim-init (csrc/init.c, args->exec_fd) from a memfd,
 * and the helper execs the command, so /proc/self/exe is never the host's
 * interpreter in the container.
 *
 * Parent <-> child protocol, over one SOCK_SEQPACKET socketpair (messages are
 * fixed-size `struct nsp_msg`):
 *
 *      parent (Python)                         child (C only)
 *      ---------------                         --------------
 *      socketpair(), build plan
 *      nsp_spawn() --- clone3 ---------------> born in its namespaces (and,
 *      close(child end)                        with CLONE_INTO_CGROUP, its cgroup)
 *                                              ops[0..]: cgroup.procs (v1 and
 *                                              the fallback), setns ...
 *                                              NSP_OP_SYNC (user namespace):
 *             <------------- {NSP_MSG_READY} --
 *      write uid_map / gid_map
 *             -- {NSP_MSG_GO} --------------->
 *                                              ops ... (mounts, pivot_root)
 *                                              NSP_OP_PTY (-t):
 *             <-- {NSP_MSG_PTY} + SCM_RIGHTS(master) --
 *                                              ops ... (ids, caps, seccomp,
 *                                              fds: the socket becomes fd n)
 *                                              on failure:
 *             <-- {NSP_MSG_ERROR, errno, op index, what} -- _exit(NSP_EXIT_SETUP)
 *                                              execveat(exec_fd): nsprim-init
 *                                              marks the socket close-on-exec,
 *                                              execve(command); on failure:
 *             <-- {NSP_MSG_ERROR, errno, -1, NSP_WHAT_EXEC} -- exit 126/127
 *      read() == 0 (EOF): the command was exec'd
 *
 * An OCI runtime's `create` (NSP_OP_WAIT_START, just before NSP_OP_FDS):
 *             <------------- {NSP_MSG_CREATED} --
 *      the parent returns, closes its end      read(fifo, 1): blocked until
 *      (a later `start` writes one byte        `start`; then fds, chdir, exec;
 *      to the FIFO)                            failures from here on are the
 *                                              exit status (125/126/127)
 *
 * If the parent goes away or answers anything but GO, the child exits.
 *
 * A plan without NSP_OP_SYNC and NSP_OP_PTY may run in a child that shares
 * the parent's memory (CLONE_VM | CLONE_VFORK, see nsp_spawn_shares_memory):
 * the parent sleeps until the child has exec'd (the helper) or exited, and a
 * failure before that is also written to res->report.
 */
#ifndef NSPRIM_SPAWN_H
#define NSPRIM_SPAWN_H

#include <stdint.h>

/* Everything between cdef-begin and cdef-end is also the cffi declaration of
 * the spawn engine: csrc/build_ffi.py reads it at build time (comments
 * dropped, enum values and struct layouts taken from the compiler, `#define
 * NAME value` exported as a constant).  Keep it to plain declarations. */
/* cdef-begin */
enum nsp_op_kind {
    NSP_OP_SETNS = 1,      /* fd, arg = nstype: join a namespace */
    NSP_OP_UNSHARE,        /* arg = CLONE_* flags */
    NSP_OP_SYNC,           /* tell the parent we are ready, wait for GO */
    NSP_OP_MOUNT_PROPAGATION, /* mflags = MS_PRIVATE|MS_SLAVE (applied with MS_REC to "/") */
    NSP_OP_ROOT,           /* src = rootfs on the host: rbind it onto itself, open it
                              (NSP_F_NODEV: nodev on the whole tree) */
    NSP_OP_MOUNT,          /* fstype, src, data, mflags, dst inside the root; fd >= 0:
                              procfs of the pid namespace fd (fstype "proc"); before
                              NSP_OP_ROOT, dst is an absolute directory on the host */
    NSP_OP_BIND,           /* src on the host -> dst inside the root (flags: REC, RDONLY,
                              NODEV) */
    NSP_OP_MASK,           /* dst inside the root: hide (/dev/null over files, ro tmpfs over dirs) */
    NSP_OP_READONLY,       /* dst inside the root: read-only; with NSP_F_REC a recursive
                              bind of the path, else the mount at dst itself */
    NSP_OP_SYMLINK,        /* src = link target, dst = link inside the root */
    NSP_OP_PIVOT_ROOT,     /* pivot_root into the root, detach the old one */
    NSP_OP_HOSTNAME,       /* src */
    NSP_OP_DOMAINNAME,     /* src */
    NSP_OP_LOOPBACK_UP,    /* bring lo up in the current network namespace */
    NSP_OP_CAP_BOUNDING,   /* caps = the set to keep in the bounding set */
    NSP_OP_SETGROUPS,      /* ids[0..nids) supplementary groups */
    NSP_OP_SETID,          /* uid, gid: setresgid + setresuid, keeping capabilities */
    NSP_OP_CAPS,           /* caps: effective = permitted = caps, inheritable = ambient = 0 */
    NSP_OP_NO_NEW_PRIVS,
    NSP_OP_FDS,            /* ids[i] = fd to become fd i (i < nids), the sync socket nids,
                              the exec helper next; every other fd is closed */
    NSP_OP_CHDIR,          /* dst, resolved inside the root (no magic links) */
    NSP_OP_EXEC,           /* argv, envp: with an exec helper, its argv (see csrc/init.c,
                              which searches PATH); without, argv[0] is the path */
    NSP_OP_SETSID,
    NSP_OP_PDEATHSIG,      /* arg = signal */
    NSP_OP_WRITE_FILE,     /* write data to the host file src (e.g. "0" to a cgroup.procs);
                              with NSP_F_UNLESS_PLACED skipped if born in the cgroup */
    NSP_OP_NONDUMPABLE,    /* PR_SET_DUMPABLE 0: nothing in a container we join may
                              ptrace us or open our /proc files */
    NSP_OP_CTTY,           /* make fd 0 (a terminal) our controlling terminal */
    NSP_OP_PTY,            /* open a terminal in our /dev/pts (after pivot_root), send its
                              master to the parent ({NSP_MSG_PTY} + SCM_RIGHTS); the next
                              NSP_OP_FDS puts the slave at 0, 1, 2 */
    NSP_OP_SECCOMP,        /* data = struct sock_filter[arg]: seccomp(SET_MODE_FILTER) */
    NSP_OP_SESSION_KEYRING, /* join a new anonymous session keyring */
    NSP_OP_WAIT_START,     /* fd = a FIFO (opened O_RDWR by the parent): tell the parent
                              {NSP_MSG_CREATED}, then block until one byte can be read
                              from fd (the OCI runtime's `start`), close fd */
    NSP_OP_RLIMIT,         /* arg = RLIMIT_*, ids = soft low, soft high, hard low, hard
                              high 32 bits: setrlimit */
    NSP_OP_WORKDIR,        /* dst inside the root (before pivot_root): if missing, make it
                              and its missing parents (0755), the last owned by uid:gid
                              (docker's and runc's: a -w/WORKDIR that is not there) */
    NSP_OP__COUNT
};

/* flags of an op */
#define NSP_F_OPTIONAL 0x1   /* a missing target (ENOENT) is not an error */
#define NSP_F_MKDIR    0x2   /* create a missing target directory */
#define NSP_F_MKFILE   0x4   /* create a missing target file */
#define NSP_F_REC      0x8   /* recursive bind */
#define NSP_F_RDONLY   0x10  /* read-only bind */
#define NSP_F_UNLESS_PLACED 0x20 /* skip if clone3 placed us with CLONE_INTO_CGROUP */
#define NSP_F_NODEV    0x40  /* nodev on the mounted tree (ROOT, BIND) */

struct nsp_op {
    int kind;
    int flags;
    int arg;
    int fd;
    unsigned long mflags;
    uint64_t caps;
    unsigned int uid;
    unsigned int gid;
    int nids;
    const unsigned int *ids;
    const char *src;
    const char *dst;
    const char *fstype;
    const char *data;
    char *const *argv;
    char *const *envp;
};

enum nsp_msg_type {
    NSP_MSG_READY = 1,
    NSP_MSG_GO,
    NSP_MSG_ERROR,
    NSP_MSG_PTY,
    NSP_MSG_CREATED      /* NSP_OP_WAIT_START: set up, waiting for `start` */
};

/* what, within a failed op, failed: an op can make several system calls */
enum nsp_what {
    NSP_WHAT_OP = 0,     /* the op's one call */
    NSP_WHAT_TARGET,     /* resolving (or making) dst inside the root */
    NSP_WHAT_SOURCE,     /* stat/open_tree of src on the host */
    NSP_WHAT_SETATTR,    /* mount_setattr of the new mount */
    NSP_WHAT_ATTACH,     /* move_mount / mount onto dst */
    NSP_WHAT_EXEC        /* the command's execve (reported by nsprim-init) */
};

struct nsp_msg {
    int32_t type;
    int32_t err;     /* errno of the failed step */
    int32_t index;   /* index of the failed op (-1: the command's exec) */
    int32_t what;    /* enum nsp_what */
};

/* exit status of a child that failed before execve */
#define NSP_EXIT_SETUP 125

struct nsp_spawn_args {
    uint64_t flags;       /* CLONE_NEW* flags */
    int cgroup_fd;        /* cgroup v2 directory to be born in, or -1 */
    int sync_fd;          /* the child's end of the socketpair */
    int parent_fd;        /* the parent's end: the child closes it first, or -1 */
    int pidns_fd;         /* pid namespace to join (the child is born in it), or -1 */
    int timens_fd;        /* time namespace to join, or -1 */
    int exec_fd;          /* the sealed exec helper NSP_OP_EXEC execs (needs sync_fd), or -1 */
    int nops;
    const struct nsp_op *ops;
};

struct nsp_spawn_result {
    int pid;
    int pidfd;
    int in_cgroup;        /* 1 if born in cgroup_fd through CLONE_INTO_CGROUP */
    int method;           /* 3 = clone3, 2 = clone */
    int shared;           /* 1 if the child shared our memory (CLONE_VM | CLONE_VFORK) */
    struct nsp_msg report; /* a shared child's failure ({NSP_MSG_ERROR, ...}), else zeros */
};

/* 1 if nsp_spawn can clone a child that shares our memory, when the plan has
 * no NSP_OP_SYNC: it then reports failure in res->report, and the sync socket
 * (sync_fd = parent_fd = -1) may be left out. */
int nsp_spawn_shares_memory(void);

/* 1 if the child of `args` must run on its own memory because it waits for
 * the parent before it execs (an NSP_OP_SYNC: the parent writes its id maps)
 * or sends it a file descriptor (NSP_OP_PTY); 0 if it may share ours. */
int nsp_plan_needs_parent(const struct nsp_spawn_args *args);

/* Clone a child that executes `ops`.  Returns the pid, or -1 with errno. */
int nsp_spawn(const struct nsp_spawn_args *args, struct nsp_spawn_result *res);
/* cdef-end */

#endif
