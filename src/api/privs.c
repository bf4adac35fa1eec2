/* Dropping what the agent never needs again once its socket is bound.
 *
 * The agent keeps running as root: it loads BPF programs whenever an
 * instrumentation asks for a collector, attaches perf events to other
 * processes' vCPU threads and reads their /proc entries. Those need
 * CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN (some program types and tracefs on
 * this kernel generation), CAP_SYS_RESOURCE (memlock on older kernels),
 * CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (/proc/PID/fd*, environ-free
 * reads of other users' VMMs) and CAP_DAC_OVERRIDE (the state directory and
 * tracefs files when they are not root's). Everything else (binding low
 * ports, loading modules, rebooting, setuid, mknod, ...) is removed from the
 * effective, permitted, inheritable and bounding sets, and no_new_privs
 * makes sure nothing the agent might exec gets any back.
 *
 * Capabilities are per thread: this must run before the agent starts the
 * HTTP thread, so that the thread serving untrusted requests inherits the
 * reduced set.
 */
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api/api.h"
#include "common/log.h"

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

static const int keep[] = {
	CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_RESOURCE,
	CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE,
};

static bool kept(int cap)
{
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		if (keep[i] == cap)
			return true;
	return false;
}

static int last_cap(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int n = 40;

	if (f) {
		if (fscanf(f, "%d", &n) != 1 || n < 0 || n > 63)
			n = 40;
		fclose(f);
	}
	return n;
}

int privs__drop(char *err, size_t errlen)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	int last = last_cap(), dropped = 0;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
		return -errno;
	}
	if (syscall(SYS_capget, &hdr, data)) {
		snprintf(err, errlen, "capget: %s", strerror(errno));
		return -errno;
	}
	/* The bounding set first: dropping from it needs CAP_SETPCAP, which
	 * goes away with the capset below. EINVAL: a capability this kernel
	 * does not know. */
	for (int c = 0; c <= last && (data[0].effective & (1u << CAP_SETPCAP)); c++) {
		if (kept(c) || prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL) {
			snprintf(err, errlen, "prctl(PR_CAPBSET_DROP, %d): %s", c, strerror(errno));
			return -errno;
		}
		dropped++;
	}
	for (int c = 0; c < 64; c++) {
		__u32 bit = 1u << (c % 32);

		if (kept(c))
			continue;
		data[c / 32].effective &= ~bit;
		data[c / 32].permitted &= ~bit;
		data[c / 32].inheritable &= ~bit;
	}
	if (syscall(SYS_capset, &hdr, data)) {
		snprintf(err, errlen, "capset: %s", strerror(errno));
		return -errno;
	}
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	log_info("agent", "privileges dropped: %d capabilities removed from the bounding set, kept bpf, perfmon, sys_admin, sys_resource, sys_ptrace, dac_read_search, dac_override; no_new_privs set",
		 dropped);
	return 0;
}
