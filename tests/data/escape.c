/* Classic container breakouts, one per argument. Each prints "BLOCKED <errno
 * name>" when the kernel refuses, or "ESCAPED" when the attempt worked; only
 * harmless variants are used (nothing here can hurt the host if it succeeds:
 * the reboot call only toggles Ctrl-Alt-Del, the clock is set to its own
 * value, the module and kexec calls carry no payload). Built statically by
 * tests/test_escape.py and copied into a busybox image.
 *
 * The "*32" attempts make the same call through the i386 compat entry
 * (int 0x80, which a 64-bit process may use): a filter written for the native
 * ABI only would miss them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/reboot.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

static int report(const char *what, long rc) {
    if (rc < 0) {
        printf("BLOCKED %s %s\n", what, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
        return 0;
    }
    printf("ESCAPED %s\n", what);
    return 1;
}

/* Static, so in the low 4 GiB of this static (non-PIE) binary: int 0x80
 * passes 32-bit pointers. */
static struct io_uring_params ring_params;

#ifdef __x86_64__
/* A syscall through the i386 compat ABI; numbers from asm/unistd_32.h. */
#define NR32_PERSONALITY 136
#define NR32_IO_URING_SETUP 425
static long syscall32(long nr, long a, long b) {
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(nr), "b"(a), "c"(b) : "memory", "r8", "r9", "r10", "r11");
    if (rc < 0 && rc > -4096) {
        errno = -rc;
        return -1;
    }
    return rc;
}
#endif

/* personality(value): Docker lets through only a few values (plain Linux,
 * PER_LINUX32, UNAME26 and the query 0xffffffff); the rest turn off ASLR,
 * make data executable, map page zero... Prints "ALLOWED" or "BLOCKED <errno>". */
static int try_personality(const char *abi, long rc) {
    if (rc < 0) {
        printf("BLOCKED personality%s %s\n", abi, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
        return 0;
    }
    syscall(SYS_personality, 0); /* back to plain Linux (if it was allowed at all) */
    printf("ALLOWED personality%s\n", abi);
    return 0;
}

static int write_file(const char *path, const char *data) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    long n = write(fd, data, strlen(data));
    close(fd);
    return n < 0 ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *t = argv[1];
    if (!strcmp(t, "release_agent")) {
        /* The 2019 trick: mount a v1 hierarchy, set release_agent, notify_on_release. */
        mkdir("/tmp/cg", 0700);
        long rc = mount("cgroup", "/tmp/cg", "cgroup", 0, "memory");
        if (rc == 0) rc = write_file("/tmp/cg/release_agent", "/bin/true");
        if (rc < 0) {
            /* and the hierarchy liblxc shows us must be read-only */
            rc = write_file("/sys/fs/cgroup/memory/release_agent", "/bin/true");
            if (rc == 0) return report("release_agent", 0);
            rc = write_file("/sys/fs/cgroup/memory/notify_on_release", "1");
        }
        return report("release_agent", rc);
    }
    if (!strcmp(t, "mount_disk")) {
        mknod("/tmp/vda", S_IFBLK | 0600, makedev(253, 0));
        return report("mount_disk", mount("/tmp/vda", "/mnt", "ext4", MS_RDONLY, NULL));
    }
    if (!strcmp(t, "mount_proc")) {
        mkdir("/tmp/p", 0700);
        return report("mount_proc", mount("proc", "/tmp/p", "proc", 0, NULL));
    }
    if (!strcmp(t, "mknod_block")) return report("mknod_block", mknod("/tmp/sda", S_IFBLK | 0600, makedev(8, 0)));
    if (!strcmp(t, "open_by_handle_at")) {
        /* shocker: a handle to the root inode of the host's filesystem */
        struct { unsigned int bytes; int type; unsigned char h[8]; } fh = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}};
        return report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY));
    }
    if (!strcmp(t, "init_module")) return report("init_module", syscall(SYS_init_module, "", 0, ""));
    if (!strcmp(t, "finit_module")) {
        int fd = open("/bin/busybox", O_RDONLY);
        return report("finit_module", syscall(SYS_finit_module, fd, "", 0));
    }
    if (!strcmp(t, "kexec")) return report("kexec", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    if (!strcmp(t, "sysrq")) return report("sysrq", write_file("/proc/sysrq-trigger", "h"));
    if (!strcmp(t, "proc_sys")) return report("proc_sys", write_file("/proc/sys/kernel/domainname", "escaped"));
    if (!strcmp(t, "ptrace_host")) {
        long pid = strtol(argv[2], NULL, 10); /* a host pid, given by the test */
        return report("ptrace_host", ptrace(PTRACE_ATTACH, pid, NULL, NULL));
    }
    if (!strcmp(t, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the user keyring */
        return report("keyctl", syscall(SYS_keyctl, 0, -4, 0));
    if (!strcmp(t, "reboot"))
        return report("reboot", syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF, NULL));
    if (!strcmp(t, "clock")) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        return report("clock", clock_settime(CLOCK_REALTIME, &now));
    }
    if (!strcmp(t, "cgroup_limit"))
        return report("cgroup_limit", write_file("/sys/fs/cgroup/memory/memory.limit_in_bytes", "-1"));
    if (!strcmp(t, "userns")) return report("userns", unshare(CLONE_NEWUSER));
    if (!strcmp(t, "bpf")) return report("bpf", syscall(SYS_bpf, 0, NULL, 0));
    if (!strcmp(t, "io_uring")) {
        /* A ring of one entry is all it takes to reach io_uring's large and
         * often-exploited kernel surface. enter and register are asked with a
         * bad fd: EBADF would mean the call reached the kernel unfiltered. */
        if (syscall(SYS_io_uring_setup, 1, &ring_params) >= 0) return report("io_uring_setup", 0);
        if (errno != EPERM) return report("io_uring_setup", -1);
        if (syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0) == 0 || errno != EPERM) {
            printf("ESCAPED io_uring_enter reached the kernel (%s)\n", strerrorname_np(errno));
            return 1;
        }
        if (syscall(SYS_io_uring_register, -1, 0, NULL, 0) == 0 || errno != EPERM) {
            printf("ESCAPED io_uring_register reached the kernel (%s)\n", strerrorname_np(errno));
            return 1;
        }
        return report("io_uring", -1);
    }
    if (!strcmp(t, "personality")) /* argv[2]: the persona, e.g. 0x0040000 */
        return try_personality("", syscall(SYS_personality, strtoul(argv[2], NULL, 0)));
#ifdef __x86_64__
    if (!strcmp(t, "io_uring32"))
        return report("io_uring32", syscall32(NR32_IO_URING_SETUP, 1, (long)&ring_params));
    if (!strcmp(t, "personality32"))
        return try_personality("32", syscall32(NR32_PERSONALITY, (long)strtoul(argv[2], NULL, 0), 0));
#endif
    return 2;
}
