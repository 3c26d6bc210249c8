/* The escape probe: run inside a container by tests/confinement.rs (built with gcc -static, so
 * it needs nothing from the image). Each check prints one line, "NAME RESULT", where RESULT is
 * "ok" when the operation succeeded, or the errno name it failed with, or a value.
 * usage: probe [all | euid | exe-write | mknod-open PATH MAJOR MINOR | mount-tmpfs DIR] */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long r) {
    if (r >= 0)
        printf("%s ok\n", name);
    else
        printf("%s %s\n", name, strerrorname_np(errno));
    fflush(stdout);
}

/* A write to `path`: "ok" or the errno of the open or the write. */
static void try_write(const char *name, const char *path, const char *data) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) {
        report(name, -1);
        return;
    }
    long r = write(fd, data, strlen(data));
    report(name, r);
    close(fd);
}

/* Bytes readable from `path` (or the errno). */
static void try_read(const char *name, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        report(name, -1);
        return;
    }
    char buf[4096];
    long total = 0, n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        total += n;
    close(fd);
    if (n < 0)
        report(name, -1);
    else
        printf("%s bytes=%ld\n", name, total);
}

static void all(void) {
    report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
    report("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/tmp", 1 /* OPEN_TREE_CLONE */));
    report("unshare", unshare(CLONE_NEWNS));
    report("unshare_user", unshare(CLONE_NEWUSER));
    int ns = open("/proc/self/ns/uts", O_RDONLY);
    report("setns", setns(ns, 0));
    /* clone with namespace flags (the raw syscall: no child runs if it were allowed). */
    long pid = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    report("clone_newns", pid);
    pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    report("clone_plain", pid);
    /* clone3 with no flags: where it is allowed, the child exits at once. */
    unsigned long long args3[11] = {0};
    args3[4] = SIGCHLD; /* exit_signal */
    pid = syscall(SYS_clone3, args3, sizeof args3);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    report("clone3", pid);
    /* mseal (462, Linux 6.10) is newer than Docker's profile: the filter's stub makes it
     * ENOSYS (not EPERM), so a C library would fall back as on an older kernel. */
    report("newer_syscall", syscall(462, 0, 0, 0));
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0));
    report("add_key", syscall(SYS_add_key, "user", "boxr-probe", "x", 1, -3));
    char params[120] = {0};
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, params));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    report("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof pe);
    pe.type = PERF_TYPE_SOFTWARE;
    pe.size = sizeof pe;
    pe.config = PERF_COUNT_SW_CPU_CLOCK;
    report("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("init_module", syscall(SYS_init_module, NULL, 0, ""));
    /* Bad magic: the kernel would say EINVAL if the call got through. */
    report("reboot", syscall(SYS_reboot, 0, 0, LINUX_REBOOT_CMD_CAD_OFF, NULL));
    char handle[64] = {0};
    ((unsigned int *)handle)[0] = 8;
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, handle, O_RDONLY));
    int s = socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0);
    report("socket_alg", s);
    if (s >= 0)
        close(s);
    s = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
    report("socket_vsock", s);
    if (s >= 0)
        close(s);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    report("socket_unix", s);
    if (s >= 0)
        close(s);
    if (access("/proc/sysrq-trigger", F_OK) == 0)
        try_write("write_sysrq", "/proc/sysrq-trigger", "h");
    else
        printf("write_sysrq absent\n");
    try_write("write_proc_sys", "/proc/sys/kernel/domainname", "boxr");
    /* The first writable-on-the-host sysfs file this kernel has. */
    const char *sysfiles[] = {"/sys/kernel/uevent_helper", "/sys/kernel/mm/transparent_hugepage/enabled",
                              "/sys/power/state", "/sys/kernel/profiling", "/sys/block/loop0/queue/read_ahead_kb",
                              "/sys/class/net/lo/mtu", NULL};
    int tried = 0;
    for (int i = 0; sysfiles[i] && !tried; i++) {
        if (access(sysfiles[i], F_OK) == 0) {
            try_write("write_sys", sysfiles[i], "0");
            tried = 1;
        }
    }
    if (!tried)
        printf("write_sys absent\n");
    /* cgroup filesystems mounted writable in the container. */
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    char line[1024];
    int rw_cgroups = 0;
    while (mi && fgets(line, sizeof line, mi)) {
        char *sep = strstr(line, " - ");
        if (sep && (!strncmp(sep, " - cgroup ", 10) || !strncmp(sep, " - cgroup2 ", 11))) {
            /* mount options are the 6th field */
            char opts[256] = {0};
            sscanf(line, "%*s %*s %*s %*s %*s %255s", opts);
            if (!strncmp(opts, "rw", 2))
                rw_cgroups++;
        }
    }
    if (mi)
        fclose(mi);
    printf("cgroup_mounts_rw %d\n", rw_cgroups);
    if (access("/proc/kcore", F_OK) == 0)
        try_read("read_kcore", "/proc/kcore");
    else
        printf("read_kcore absent\n");
    try_read("read_keys", "/proc/keys");
    report("release_agent", access("/sys/fs/cgroup/release_agent", F_OK));
    /* Descriptors beyond stdio that the container did not open itself. */
    DIR *d = opendir("/proc/self/fd");
    int self = dirfd(d), leaked = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd <= 2 || fd == self || fd == ns)
            continue;
        char target[512] = {0};
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        readlink(path, target, sizeof target - 1);
        printf("fd %d -> %s\n", fd, target);
        leaked++;
    }
    closedir(d);
    printf("leaked_fds %d\n", leaked);
    char exe[256] = {0};
    readlink("/proc/1/exe", exe, sizeof exe - 1);
    printf("init_exe %s\n", exe);
    report("init_exe_write", open("/proc/1/exe", O_WRONLY));
    report("self_exe_write", open("/proc/self/exe", O_WRONLY));
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    if (!strcmp(what, "all")) {
        all();
    } else if (!strcmp(what, "euid")) {
        printf("euid %d\n", (int)geteuid());
    } else if (!strcmp(what, "mknod-open") && argc == 5) {
        dev_t dev = makedev(atoi(argv[3]), atoi(argv[4]));
        report("mknod", mknod(argv[2], S_IFBLK | 0600, dev));
        report("open_block", open(argv[2], O_RDONLY));
    } else if (!strcmp(what, "mount-tmpfs") && argc == 3) {
        report("mount", mount("none", argv[2], "tmpfs", 0, NULL));
    } else {
        fprintf(stderr, "usage: probe [all|euid|mknod-open PATH MAJOR MINOR|mount-tmpfs DIR]\n");
        return 2;
    }
    return 0;
}
