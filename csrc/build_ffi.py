"""cffi builder for nsprim's C core (out-of-line API mode).

The cdef is assembled from pieces in a fixed order: kernel constants (values
taken from the kernel headers at compile time, never written here), the
syscall wrappers of syscalls.h, then the spawn engine of spawn.h.
"""

from __future__ import annotations

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

_CAPS = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK "
    "IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN "
    "SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
    "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM "
    "BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE LAST_CAP"
).split()

_CONSTANTS = (
    # clone / namespaces
    "CLONE_NEWNS CLONE_NEWUTS CLONE_NEWIPC CLONE_NEWUSER CLONE_NEWPID "
    "CLONE_NEWNET CLONE_NEWCGROUP CLONE_NEWTIME CLONE_INTO_CGROUP CLONE_PIDFD "
    # mount(2)
    "MS_RDONLY MS_NOSUID MS_NODEV MS_NOEXEC MS_REMOUNT MS_BIND MS_REC MS_PRIVATE "
    "MS_SLAVE MS_SHARED MS_STRICTATIME MS_RELATIME MS_MOVE MNT_DETACH MNT_FORCE "
    # new mount API
    "OPEN_TREE_CLONE OPEN_TREE_CLOEXEC AT_RECURSIVE AT_EMPTY_PATH "
    "MOVE_MOUNT_F_EMPTY_PATH MOVE_MOUNT_T_EMPTY_PATH FSOPEN_CLOEXEC FSMOUNT_CLOEXEC "
    "FSCONFIG_SET_FLAG FSCONFIG_SET_STRING FSCONFIG_CMD_CREATE "
    "MOUNT_ATTR_RDONLY MOUNT_ATTR_NOSUID MOUNT_ATTR_NODEV MOUNT_ATTR_NOEXEC "
    "MOUNT_ATTR_IDMAP "
    # misc
    "CLOSE_RANGE_CLOEXEC RESOLVE_IN_ROOT RESOLVE_NO_MAGICLINKS O_PATH "
    # the spawn engine
    "NSP_F_OPTIONAL NSP_F_MKDIR NSP_F_MKFILE NSP_F_REC NSP_F_RDONLY NSP_F_UNLESS_PLACED "
    "NSP_F_NODEV "
    "NSP_EXIT_SETUP"
).split() + [f"CAP_{c}" for c in _CAPS]

CDEF_CONSTANTS = "".join(f"#define {name} ...\n" for name in _CONSTANTS)

CDEF_SYSCALLS = """
int nsp_unshare(int flags);
int nsp_setns(int fd, int nstype);
int nsp_pivot_root(const char *new_root, const char *put_old);
int nsp_mount(const char *src, const char *dst, const char *fstype,
              unsigned long flags, const char *data);
int nsp_umount2(const char *target, int flags);
int nsp_fsopen(const char *fsname, unsigned int flags);
int nsp_fsconfig(int fd, unsigned int cmd, const char *key, const char *value, int aux);
int nsp_fsmount(int fd, unsigned int flags, unsigned int attr_flags);
int nsp_move_mount(int from_dfd, const char *from_path, int to_dfd,
                   const char *to_path, unsigned int flags);
int nsp_open_tree(int dfd, const char *path, unsigned int flags);
int nsp_mount_setattr(int dfd, const char *path, unsigned int flags,
                      uint64_t attr_set, uint64_t attr_clr, uint64_t propagation,
                      uint64_t userns_fd);
int nsp_openat2(int dfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
int nsp_pidfd_open(int pid, unsigned int flags);
int nsp_pidfd_send_signal(int pidfd, int sig, unsigned int flags);
int nsp_close_range(unsigned int first, unsigned int last, unsigned int flags);
int nsp_sethostname(const char *name, size_t len);
int nsp_bpf(int cmd, void *attr, unsigned int size);
"""

CDEF_SPAWN = """
enum nsp_op_kind {
    NSP_OP_SETNS, NSP_OP_UNSHARE, NSP_OP_SYNC, NSP_OP_MOUNT_PROPAGATION, NSP_OP_ROOT,
    NSP_OP_MOUNT, NSP_OP_BIND, NSP_OP_MASK, NSP_OP_READONLY, NSP_OP_SYMLINK,
    NSP_OP_PIVOT_ROOT, NSP_OP_HOSTNAME, NSP_OP_DOMAINNAME, NSP_OP_LOOPBACK_UP,
    NSP_OP_CAP_BOUNDING, NSP_OP_SETGROUPS, NSP_OP_SETID, NSP_OP_CAPS,
    NSP_OP_NO_NEW_PRIVS, NSP_OP_FDS, NSP_OP_CHDIR, NSP_OP_EXEC, NSP_OP_SETSID,
    NSP_OP_PDEATHSIG, NSP_OP_WRITE_FILE, NSP_OP_NONDUMPABLE, NSP_OP_CTTY, NSP_OP_PTY,
    NSP_OP_SECCOMP, NSP_OP_SESSION_KEYRING,
    NSP_OP__COUNT, ...
};
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
    ...;
};
enum nsp_msg_type { NSP_MSG_READY, NSP_MSG_GO, NSP_MSG_ERROR, NSP_MSG_PTY, ... };
struct nsp_msg { int32_t type; int32_t err; int32_t index; int32_t kind; };
struct nsp_spawn_args {
    uint64_t flags;
    int cgroup_fd;
    int sync_fd;
    int parent_fd;
    int pidns_fd;
    int timens_fd;
    int exec_fd;
    int nops;
    const struct nsp_op *ops;
    ...;
};
struct nsp_spawn_result {
    int pid; int pidfd; int in_cgroup; int method; int shared; struct nsp_msg report; ...;
};
int nsp_spawn(const struct nsp_spawn_args *args, struct nsp_spawn_result *res);
int nsp_spawn_shares_memory(void);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF_CONSTANTS + CDEF_SYSCALLS + CDEF_SPAWN)
ffibuilder.set_source(
    "nsprim._nsprim_c",
    '#include "syscalls.h"\n#include "spawn.h"\n#include <linux/capability.h>\n',
    sources=[os.path.relpath(os.path.join(HERE, "spawn.c"))],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-Wall", "-Wextra", "-Werror", "-O2", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
