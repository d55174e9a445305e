/* Thin wrappers around the Linux syscalls nsprim needs.
 *
 * Every wrapper returns what the kernel returns: >= 0 on success, or -1 with
 * errno set.  They call syscall(2) directly so that they work with any libc
 * and report ENOSYS (instead of failing to link) on kernels or libcs that lack
 * them.  All are async-signal-safe: the spawn engine's child uses them between
 * clone3 and execve.
 */
#ifndef NSPRIM_SYSCALLS_H
#define NSPRIM_SYSCALLS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>     /* glibc >= 2.36 also pulls in linux/mount.h */
#include <sys/syscall.h>
#include <sys/types.h>
#include <linux/sched.h>   /* struct clone_args, CLONE_* */
#include <linux/openat2.h> /* struct open_how, RESOLVE_* */
#include <linux/close_range.h>

#ifndef MOUNT_ATTR_RDONLY
#include <linux/mount.h>
#endif

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif

static inline long nsp_clone3(struct clone_args *args, size_t size)
{
    return syscall(SYS_clone3, args, size);
}

/* cdef-begin: csrc/build_ffi.py declares every wrapper from here to cdef-end
 * to cffi (each definition becomes its prototype).  nsp_clone3 stays out:
 * only the spawn engine calls it. */
static inline int nsp_unshare(int flags) { return (int)syscall(SYS_unshare, flags); }
static inline int nsp_setns(int fd, int nstype) { return (int)syscall(SYS_setns, fd, nstype); }

static inline int nsp_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

static inline int nsp_mount(const char *src, const char *dst, const char *fstype,
                            unsigned long flags, const char *data)
{
    return (int)syscall(SYS_mount, src, dst, fstype, flags, data);
}

static inline int nsp_umount2(const char *target, int flags)
{
    return (int)syscall(SYS_umount2, target, flags);
}

static inline int nsp_fsopen(const char *fsname, unsigned int flags)
{
    return (int)syscall(SYS_fsopen, fsname, flags);
}

static inline int nsp_fsconfig(int fd, unsigned int cmd, const char *key,
                               const char *value, int aux)
{
    return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}

static inline int nsp_fsmount(int fd, unsigned int flags, unsigned int attr_flags)
{
    return (int)syscall(SYS_fsmount, fd, flags, attr_flags);
}

static inline int nsp_move_mount(int from_dfd, const char *from_path, int to_dfd,
                                 const char *to_path, unsigned int flags)
{
    return (int)syscall(SYS_move_mount, from_dfd, from_path, to_dfd, to_path, flags);
}

static inline int nsp_open_tree(int dfd, const char *path, unsigned int flags)
{
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}

static inline int nsp_mount_setattr(int dfd, const char *path, unsigned int flags,
                                    uint64_t attr_set, uint64_t attr_clr,
                                    uint64_t propagation, uint64_t userns_fd)
{
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = attr_set;
    attr.attr_clr = attr_clr;
    attr.propagation = propagation;
    attr.userns_fd = userns_fd;
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, &attr, sizeof attr);
}

static inline int nsp_openat2(int dfd, const char *path, uint64_t flags,
                              uint64_t mode, uint64_t resolve)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dfd, path, &how, sizeof how);
}

static inline int nsp_pidfd_open(int pid, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

static inline int nsp_pidfd_send_signal(int pidfd, int sig, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags);
}

static inline int nsp_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
    return (int)syscall(SYS_close_range, first, last, flags);
}

static inline int nsp_sethostname(const char *name, size_t len)
{
    return (int)syscall(SYS_sethostname, name, len);
}

static inline int nsp_setdomainname(const char *name, size_t len)
{
    return (int)syscall(SYS_setdomainname, name, len);
}

/* bpf(2) with a raw union bpf_attr buffer (nsprim.devices fills it) */
static inline int nsp_bpf(int cmd, void *attr, unsigned int size)
{
    return (int)syscall(SYS_bpf, cmd, attr, size);
}
/* cdef-end */

#endif
