/* bench workload: tiny, static, identical for every subject.
 * usage: wl exec N WORKERS PATH [RATE]   fork+execv(PATH)+waitpid, N per worker (RATE: paced, per second)
 *        wl open N WORKERS PATH          open(PATH, O_RDONLY)+close, N per worker
 *        wl connect N WORKERS            TCP connect+accept+close on 127.0.0.1, N per worker
 *        wl syscall N WORKERS            getppid(), N per worker: what an observer adds to a system
 *                                        call it does not watch (the host-wide per-syscall tax)
 * prints one JSON line: {"mode":..,"ops":total,"elapsed_ns":..,"errors":..}  */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long do_exec(long n, const char *path, double rate) {
    long errors = 0;
    char *argv[] = {(char *)path, NULL};
    char *envp[] = {NULL};
    long long start = now_ns();
    for (long i = 0; i < n; i++) {
        if (rate > 0) {
            long long due = start + (long long)(i * 1e9 / rate);
            long long t = now_ns();
            if (due > t) {
                struct timespec ts = {(due - t) / 1000000000LL, (due - t) % 1000000000LL};
                nanosleep(&ts, NULL);
            }
        }
        pid_t p = fork();
        if (p == 0) {
            execve(path, argv, envp);
            _exit(127);
        }
        if (p < 0) { errors++; continue; }
        int st;
        if (waitpid(p, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) errors++;
    }
    return errors;
}

static long do_open(long n, const char *path) {
    long errors = 0;
    for (long i = 0; i < n; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) errors++;
        else close(fd);
    }
    return errors;
}

static long do_connect(long n) {
    long errors = 0;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 128) ||
        getsockname(l, (struct sockaddr *)&a, &al)) return n;
    for (long i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        struct linger lg = {1, 0}; /* RST on close: no TIME_WAIT pile-up */
        setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a)) { errors++; if (c >= 0) close(c); continue; }
        int s = accept(l, NULL, NULL);
        if (s < 0) errors++; else close(s);
        close(c);
    }
    close(l);
    return errors;
}

static long do_syscall(long n) {
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid); /* not getppid(): no libc caching, always a real system call */
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: wl exec|open|connect|syscall N WORKERS [PATH [RATE]]\n"); return 2; }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    int workers = atoi(argv[3]);
    const char *path = argc > 4 ? argv[4] : "";
    double rate = argc > 5 ? atof(argv[5]) : 0;
    long *errs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    long long start = now_ns();
    for (int w = 0; w < workers; w++) {
        pid_t p = fork();
        if (p == 0) {
            long e = 0;
            if (!strcmp(mode, "exec")) e = do_exec(n, path, rate / workers);
            else if (!strcmp(mode, "open")) e = do_open(n, path);
            else if (!strcmp(mode, "connect")) e = do_connect(n);
            else if (!strcmp(mode, "syscall")) e = do_syscall(n);
            else e = n;
            __atomic_add_fetch(errs, e, __ATOMIC_SEQ_CST);
            _exit(0);
        }
    }
    for (int w = 0; w < workers; w++) wait(NULL);
    long long el = now_ns() - start;
    printf("{\"mode\":\"%s\",\"ops\":%ld,\"elapsed_ns\":%lld,\"errors\":%ld}\n", mode, n * workers, el, *errs);
    return 0;
}
