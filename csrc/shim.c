/* nsprim-shim: the small supervisor a detached container leaves behind
 * (the role conmon plays for podman).
 *
 * A Python supervisor starts the container (its child), then execs this
 * program, which inherits the container's pidfd and the read ends of its
 * stdout/stderr pipes.  The shim:
 *   - copies what the container writes into DIR/container.log, one JSON
 *     object per line: {"time":"<RFC 3339 UTC>","stream":"stdout","log":"..."}
 *   - waits for the container (pidfd), drains the pipes,
 *   - writes DIR/exit ("<status> <signal> <finished ns since epoch>"),
 *   - and execs the finishing command given after "--" (Python again, to
 *     release the container's resources and apply its restart policy).
 * It allocates nothing after start and stays a few hundred KiB.
 *
 * usage: nsprim-shim DIR PIDFD OUTFD ERRFD -- CMD...   (OUTFD/ERRFD may be -1)
 * OUTFD written tN is a terminal's master side N: logged as read, not by lines.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 16384

struct stream {
    int fd;
    const char *name;
    int raw;  /* a terminal: what is read is logged as it comes, not by lines */
    char buf[LINE_MAX_BYTES];
    size_t len;
};

static int log_fd = -1;
/* rotation (docker's json-file max-size/max-file): NSPRIM_LOG_MAX_SIZE bytes
 * per file, NSPRIM_LOG_MAX_FILE files: container.log, then .1 (the newest
 * rotated) to .N-1; 0 or unset: no limit */
static long long log_max, log_size;
static int log_files = 1;
static char log_path[4096];

static void rotate(void)
{
    char from[4200], to[4200];
    int i;
    if (log_fd >= 0)
        close(log_fd);
    for (i = log_files - 1; i >= 1; i--) {
        if (i == 1)
            snprintf(from, sizeof from, "%s", log_path);
        else
            snprintf(from, sizeof from, "%s.%d", log_path, i - 1);
        snprintf(to, sizeof to, "%s.%d", log_path, i);
        (void)rename(from, to);  /* a missing one (ENOENT) is fine */
    }
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
                  (log_files <= 1 ? O_TRUNC : 0), 0640);
    log_size = 0;
}

static void put(char *out, size_t *n, size_t cap, const char *s, size_t len)
{
    if (*n + len <= cap) {
        memcpy(out + *n, s, len);
        *n += len;
    }
}

/* one log record; the line is JSON-escaped */
static void emit(const char *stream, const char *line, size_t len)
{
    static char out[LINE_MAX_BYTES * 6 + 256];
    char ts[64];
    struct timespec now;
    struct tm tm;
    size_t n = 0, i;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    put(out, &n, sizeof out, "{\"time\":\"", 9);
    put(out, &n, sizeof out, ts, strlen(ts));
    {
        char frac[16];
        int k = snprintf(frac, sizeof frac, ".%09ldZ", (long)now.tv_nsec);
        put(out, &n, sizeof out, frac, (size_t)k);
    }
    put(out, &n, sizeof out, "\",\"stream\":\"", 12);
    put(out, &n, sizeof out, stream, strlen(stream));
    put(out, &n, sizeof out, "\",\"log\":\"", 9);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(out, &n, sizeof out, esc, 2);
        } else if (c == '\n') {
            put(out, &n, sizeof out, "\\n", 2);
        } else if (c == '\r') {
            put(out, &n, sizeof out, "\\r", 2);
        } else if (c == '\t') {
            put(out, &n, sizeof out, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            int k = snprintf(esc, sizeof esc, "\\u%04x", c);
            put(out, &n, sizeof out, esc, (size_t)k);
        } else {
            put(out, &n, sizeof out, (const char *)&line[i], 1);
        }
    }
    put(out, &n, sizeof out, "\"}\n", 3);
    if (log_fd >= 0) {
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(log_fd, out + off, n - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            off += (size_t)w;
        }
        log_size += (long long)off;
        if (log_max > 0 && log_size >= log_max)
            rotate();
    }
}

/* read what is there; emit complete lines (and full buffers) */
static int pump(struct stream *s)
{
    ssize_t r;
    size_t start = 0, i;
    if (s->fd < 0)
        return 0;
    r = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (r <= 0) {  /* end, or EIO: a terminal whose last slave has closed */
        if (s->len)
            emit(s->name, s->buf, s->len);
        s->len = 0;
        close(s->fd);
        s->fd = -1;
        return 0;
    }
    s->len += (size_t)r;
    if (s->raw) {
        emit(s->name, s->buf, s->len);
        s->len = 0;
        return 1;
    }
    for (i = 0; i < s->len; i++) {
        if (s->buf[i] == '\n') {
            emit(s->name, s->buf + start, i + 1 - start);
            start = i + 1;
        }
    }
    if (start == 0 && s->len == sizeof s->buf) {
        emit(s->name, s->buf, s->len);  /* a very long line: in pieces */
        s->len = 0;
    } else if (start) {
        memmove(s->buf, s->buf + start, s->len - start);
        s->len -= start;
    }
    return 1;
}

int main(int argc, char **argv)
{
    static struct stream out, err;
    struct pollfd pfd[3];
    char path[4096];
    int pidfd, i, cmd = -1, exited = 0, status = 0, sig = 0;
    siginfo_t si;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            cmd = i + 1;
            break;
        }
    }
    if (argc < 6 || cmd != 6 || cmd >= argc) {
        fprintf(stderr, "usage: nsprim-shim DIR PIDFD OUTFD ERRFD -- CMD...\n");
        return 2;
    }
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    pidfd = atoi(argv[2]);
    out.raw = argv[3][0] == 't';
    out.fd = atoi(argv[3] + out.raw);
    out.name = "stdout";
    err.fd = atoi(argv[4]);
    err.name = "stderr";
    snprintf(log_path, sizeof log_path, "%s/container.log", argv[1]);
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (getenv("NSPRIM_LOG_MAX_SIZE"))
        log_max = strtoll(getenv("NSPRIM_LOG_MAX_SIZE"), NULL, 10);
    if (getenv("NSPRIM_LOG_MAX_FILE"))
        log_files = atoi(getenv("NSPRIM_LOG_MAX_FILE"));
    if (log_files < 1)
        log_files = 1;
    if (log_fd >= 0) {
        off_t end = lseek(log_fd, 0, SEEK_END);
        log_size = end > 0 ? (long long)end : 0;
        if (log_max > 0 && log_size >= log_max)
            rotate();
    }

    while (!exited || out.fd >= 0 || err.fd >= 0) {
        int n = 0, r;
        if (out.fd >= 0) {
            pfd[n].fd = out.fd;
            pfd[n++].events = POLLIN;
        }
        if (err.fd >= 0) {
            pfd[n].fd = err.fd;
            pfd[n++].events = POLLIN;
        }
        if (!exited) {
            pfd[n].fd = pidfd;
            pfd[n++].events = POLLIN;
        }
        /* after the exit, pipes held by escaped processes get 2 s to close */
        r = poll(pfd, (nfds_t)n, exited ? 2000 : -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            break;
        for (i = 0; i < n; i++) {
            if (!pfd[i].revents)
                continue;
            if (pfd[i].fd == pidfd) {
                memset(&si, 0, sizeof si);
                if (waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, &si, WEXITED) == 0) {
                    exited = 1;
                    if (si.si_code == CLD_EXITED)
                        status = si.si_status;
                    else {
                        sig = si.si_status;
                        status = 128 + sig;
                    }
                }
            } else if (pfd[i].fd == out.fd) {
                pump(&out);
            } else if (pfd[i].fd == err.fd) {
                pump(&err);
            }
        }
    }
    {
        struct timespec now;
        char rec[128], tmp[4096];
        int fd, k;
        clock_gettime(CLOCK_REALTIME, &now);
        k = snprintf(rec, sizeof rec, "%d %d %lld\n", status, sig,
                     (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
        snprintf(tmp, sizeof tmp, "%s/exit.tmp", argv[1]);
        snprintf(path, sizeof path, "%s/exit", argv[1]);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (write(fd, rec, (size_t)k) != k)
                perror("nsprim-shim: exit record");
            close(fd);
            rename(tmp, path);
        }
    }
    if (log_fd >= 0)
        close(log_fd);
    close(pidfd);
    execvp(argv[cmd], argv + cmd);
    perror("nsprim-shim: exec");
    return 1;
}
