/* Parsers for what /proc says about a VMM process.
 *
 * Everything here reads bytes written by other processes: a cmdline may be
 * truncated mid-argument, lack its trailing NUL, or hold any byte at all. So
 * these functions allocate nothing, never read past the length they are
 * given, truncate what does not fit, and replace control bytes by '?' so that
 * a name can be printed in a table without moving the cursor.
 *
 * This file depends on libc only, so that the fuzz target can link it alone.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discovery/discovery.h"

/* Highest vCPU index we accept; KVM's own limit is 4096 on x86, this leaves
 * room for other architectures while refusing absurd digit strings. */
#define VCPU_INDEX_MAX 1000000

/* ---- argument and key=value iteration ------------------------------------ */

struct arg_iter {
	const char *buf;
	size_t len;
	size_t pos;
};

/* Next NUL-separated argument; the last one may run to `len` without a NUL. */
static int arg_next(struct arg_iter *it, const char **arg, size_t *alen)
{
	const char *s, *nul;
	size_t rem, n;

	if (!it->buf || it->pos >= it->len)
		return 0;
	s = it->buf + it->pos;
	rem = it->len - it->pos;
	nul = memchr(s, '\0', rem);
	n = nul ? (size_t)(nul - s) : rem;
	*arg = s;
	*alen = n;
	it->pos += n + 1;
	return 1;
}

enum { OPT_NO, OPT_NEXT, OPT_INLINE };

/* Does `arg` spell option `opt` as -opt, --opt, -opt=V or --opt=V?
 * QEMU accepts one or two dashes for every option, other VMMs use two. */
static int opt_match(const char *arg, size_t alen, const char *opt,
		     const char **val, size_t *vlen, int *dashes)
{
	size_t olen = strlen(opt), skip;

	if (alen >= 2 && arg[0] == '-' && arg[1] == '-')
		skip = 2;
	else if (alen >= 1 && arg[0] == '-')
		skip = 1;
	else
		return OPT_NO;
	if (alen - skip < olen || memcmp(arg + skip, opt, olen))
		return OPT_NO;
	*dashes = (int)skip;
	if (alen - skip == olen)
		return OPT_NEXT;
	if (arg[skip + olen] != '=')
		return OPT_NO;
	*val = arg + skip + olen + 1;
	*vlen = alen - skip - olen - 1;
	return OPT_INLINE;
}

struct kv {
	const char *key;	/* NULL when the element has no '=' */
	size_t klen;
	const char *val;	/* the value, or the whole element without '=' */
	size_t vlen;
};

/* Next element of a QEMU-style "a,b=c,d=e" list. ",," is QEMU's escaped
 * comma and stays inside the element (copy_out turns it into one comma). */
static int kv_next(const char *s, size_t len, size_t *pos, struct kv *kv)
{
	size_t i = *pos, start = *pos;
	const char *eq;

	if (i > len)
		return 0;
	while (i < len) {
		if (s[i] == ',') {
			if (i + 1 < len && s[i + 1] == ',') {
				i += 2;
				continue;
			}
			break;
		}
		i++;
	}
	*pos = i + 1;
	eq = memchr(s + start, '=', i - start);
	if (eq) {
		kv->key = s + start;
		kv->klen = (size_t)(eq - (s + start));
		kv->val = eq + 1;
		kv->vlen = i - start - kv->klen - 1;
	} else {
		kv->key = NULL;
		kv->klen = 0;
		kv->val = s + start;
		kv->vlen = i - start;
	}
	return 1;
}

static int kv_key_is(const struct kv *kv, const char *key)
{
	return kv->key && kv->klen == strlen(key) && !memcmp(kv->key, key, kv->klen);
}

/* Copy src[0..slen) into dst as a NUL-terminated string, turning ",," into
 * ',' and control bytes into '?', truncating to dstlen - 1 bytes. Returns
 * the length written. */
static size_t copy_out(char *dst, size_t dstlen, const char *src, size_t slen)
{
	size_t i = 0, o = 0;

	if (!dstlen)
		return 0;
	while (i < slen && o + 1 < dstlen) {
		unsigned char c = (unsigned char)src[i];

		if (c == ',' && i + 1 < slen && src[i + 1] == ',')
			i++;
		dst[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
		i++;
	}
	dst[o] = '\0';
	return o;
}

/* ---- VM name -------------------------------------------------------------- */

/* The name inside a -name/--name value. QEMU's value is a key=value list
 * whose first element may omit its key ("guest"): "-name vm1,debug-threads=on"
 * and "-name guest=vm1,process=qemu-vm1" both name vm1. A first element with
 * a key QEMU does not know ("--name=a=b" from another VMM) is taken verbatim. */
static int name_from_value(const char *v, size_t vlen, const char **name, size_t *nlen)
{
	size_t pos = 0;
	struct kv kv;
	int found = 0, first = 1;

	while (kv_next(v, vlen, &pos, &kv)) {
		if (kv_key_is(&kv, "guest")) {
			*name = kv.val;
			*nlen = kv.vlen;
			found = 1;
		} else if (first && !kv.key) {
			*name = kv.val;
			*nlen = kv.vlen;
			found = 1;
		} else if (first && !kv_key_is(&kv, "process") &&
			   !kv_key_is(&kv, "debug-threads")) {
			*name = v;
			*nlen = (size_t)(kv.val + kv.vlen - v);
			found = 1;
		}
		first = 0;
	}
	return found && *nlen ? 0 : -ENOENT;
}

int discovery__parse_name(const char *cmdline, size_t len, char *name, size_t name_len)
{
	struct arg_iter it = { cmdline, len, 0 };
	const char *arg, *val, *best = NULL;
	size_t alen, vlen, blen = 0;
	int dashes, m;

	if (!name || !name_len)
		return -EINVAL;
	name[0] = '\0';
	/* argv[0] is the program, never an option */
	if (!arg_next(&it, &arg, &alen))
		return -ENOENT;
	while (arg_next(&it, &arg, &alen)) {
		const char *n = NULL;
		size_t nlen = 0;

		m = opt_match(arg, alen, "name", &val, &vlen, &dashes);
		if (m == OPT_NO)
			continue;
		if (m == OPT_NEXT && !arg_next(&it, &val, &vlen))
			break;
		/* the last -name wins, as in QEMU */
		if (!name_from_value(val, vlen, &n, &nlen)) {
			best = n;
			blen = nlen;
		}
	}
	if (!best)
		return -ENOENT;
	copy_out(name, name_len, best, blen);
	return 0;
}

/* ---- identities operators use: UUID and VMID ------------------------------- */

/* The last value of option `opt` (QEMU: the last one wins). 1 if found. */
static int last_opt_value(const char *cmdline, size_t len, const char *opt, const char **val,
			  size_t *vlen)
{
	struct arg_iter it = { cmdline, len, 0 };
	const char *arg, *v;
	size_t alen, l;
	int dashes, m, found = 0;

	if (!arg_next(&it, &arg, &alen))
		return 0;
	while (arg_next(&it, &arg, &alen)) {
		m = opt_match(arg, alen, opt, &v, &l, &dashes);
		if (m == OPT_NO)
			continue;
		if (m == OPT_NEXT && !arg_next(&it, &v, &l))
			break;
		*val = v;
		*vlen = l;
		found = 1;
	}
	return found;
}

/* A UUID as QEMU takes it (8-4-4-4-12 hex digits), written lowercase. */
static int uuid_copy(const char *v, size_t vlen, char *out, size_t outlen)
{
	if (vlen != 36 || outlen < 37)
		return -ENOENT;
	for (size_t i = 0; i < 36; i++) {
		char c = v[i];
		int dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
					(c >= 'A' && c <= 'F')))
			return -ENOENT;
		out[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
	}
	out[36] = '\0';
	return 0;
}

static int digits_copy(const char *v, size_t vlen, char *out, size_t outlen)
{
	if (!vlen || vlen >= outlen || vlen > 10)
		return -ENOENT;
	for (size_t i = 0; i < vlen; i++)
		if (v[i] < '0' || v[i] > '9')
			return -ENOENT;
	memcpy(out, v, vlen);
	out[vlen] = '\0';
	return 0;
}

/* Proxmox keeps a VM's files as /var/run/qemu-server/<VMID>.{pid,qmp,...}:
 * with a QEMU that has no -id, -pidfile tells the VMID. */
static int vmid_from_path(const char *v, size_t vlen, char *out, size_t outlen)
{
	static const char dir[] = "qemu-server/";
	const char *base = NULL, *dot;

	for (size_t i = 0; i + sizeof(dir) - 1 <= vlen; i++)
		if (!memcmp(v + i, dir, sizeof(dir) - 1))
			base = v + i + sizeof(dir) - 1;
	if (!base)
		return -ENOENT;
	dot = memchr(base, '.', (size_t)(v + vlen - base));
	if (!dot || memchr(base, '/', (size_t)(dot - base)))
		return -ENOENT;
	return digits_copy(base, (size_t)(dot - base), out, outlen);
}

int discovery__parse_uuid(const char *cmdline, size_t len, char *uuid, size_t uuid_len)
{
	const char *v;
	size_t vlen;

	if (!uuid || !uuid_len)
		return -EINVAL;
	uuid[0] = '\0';
	if (!last_opt_value(cmdline, len, "uuid", &v, &vlen))
		return -ENOENT;
	return uuid_copy(v, vlen, uuid, uuid_len);
}

int discovery__parse_vmid(const char *cmdline, size_t len, char *vmid, size_t vmid_len)
{
	const char *v;
	size_t vlen;

	if (!vmid || !vmid_len)
		return -EINVAL;
	vmid[0] = '\0';
	if (last_opt_value(cmdline, len, "id", &v, &vlen))
		return digits_copy(v, vlen, vmid, vmid_len);
	if (last_opt_value(cmdline, len, "pidfile", &v, &vlen))
		return vmid_from_path(v, vlen, vmid, vmid_len);
	return -ENOENT;
}

/* ---- fdinfo, thread names, fd links -------------------------------------- */

int discovery__parse_fdinfo_iff(const char *fdinfo, char *ifname, size_t ifname_len)
{
	const char *line = fdinfo;

	if (!ifname || !ifname_len)
		return -EINVAL;
	ifname[0] = '\0';
	if (!fdinfo)
		return -ENOENT;
	while (*line) {
		if (!strncmp(line, "iff:", 4)) {
			const char *v = line + 4, *end;

			while (*v == ' ' || *v == '\t')
				v++;
			end = v;
			while (*end && *end != '\n' && *end != ' ' && *end != '\t')
				end++;
			if (end == v)
				return -ENOENT;
			copy_out(ifname, ifname_len, v, (size_t)(end - v));
			return 0;
		}
		line = strchr(line, '\n');
		if (!line)
			break;
		line++;
	}
	return -ENOENT;
}

/* Decimal vCPU index at *s; advances *s past it. -1 if none or too big. */
static int parse_index(const char **s)
{
	const char *p = *s;
	long v = 0;

	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (*p - '0');
		if (v > VCPU_INDEX_MAX)
			return -1;
		p++;
	}
	*s = p;
	return (int)v;
}

/* Index after `prefix` followed by exactly `suffix` (and an optional newline,
 * as read from /proc/.../comm). */
static int index_between(const char *s, const char *prefix, const char *suffix)
{
	size_t plen = strlen(prefix), slen = strlen(suffix);
	int idx;

	if (strncmp(s, prefix, plen))
		return -1;
	s += plen;
	idx = parse_index(&s);
	if (idx < 0 || strncmp(s, suffix, slen))
		return -1;
	s += slen;
	if (*s == '\n')
		s++;
	return *s ? -1 : idx;
}

/* vCPU thread names of the VMMs we know:
 *   "CPU 3/KVM"      QEMU
 *   "fc_vcpu 3"      Firecracker
 *   "vcpu3"          Cloud Hypervisor
 *   "crosvm_vcpu3"   crosvm
 */
int discovery__parse_vcpu_comm(const char *comm)
{
	static const struct { const char *prefix, *suffix; } forms[] = {
		{ "CPU ", "/KVM" },
		{ "fc_vcpu ", "" },
		{ "vcpu", "" },
		{ "crosvm_vcpu", "" },
	};
	int idx;

	if (!comm)
		return -1;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		idx = index_between(comm, forms[i].prefix, forms[i].suffix);
		if (idx >= 0)
			return idx;
	}
	return -1;
}

int discovery__parse_vcpu_fd_link(const char *link)
{
	if (!link)
		return -1;
	return index_between(link, "anon_inode:kvm-vcpu:", "");
}

int discovery__is_vm_fd_link(const char *link)
{
	return link && !strcmp(link, "anon_inode:kvm-vm");
}

/* ---- which open files may be disks ---------------------------------------- */

static int has_prefix(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && !strcmp(s + n - m, suf);
}

/* A shared library: "libfoo.so" or "libfoo.so.1.2" in the last component. */
static int is_shared_lib(const char *path)
{
	const char *base = strrchr(path, '/'), *so;

	base = base ? base + 1 : path;
	for (so = strstr(base, ".so"); so; so = strstr(so + 1, ".so"))
		if (so[3] == '\0' || so[3] == '.')
			return 1;
	return 0;
}

/* The rule, by name only (the scan then stat()s what passes and keeps block
 * devices, and regular files whose size is a non-zero multiple of 512 bytes,
 * which every raw/qcow2/vmdk/vhdx/iso image is and logs, pidfiles and
 * sockets almost never are):
 *  - absolute paths only: "anon_inode:", "socket:[", "pipe:[" are not files;
 *  - not memfd ("/memfd:...") nor unlinked files (" (deleted)"): that is how
 *    VMMs back guest RAM (-mem-path, memory-backend-file);
 *  - not under /proc, /sys, /dev/shm, /dev/hugepages, /dev/mqueue, /dev/pts:
 *    pseudo files and RAM backings;
 *  - not the character devices every VMM holds (/dev/kvm, /dev/net/tun,
 *    /dev/vhost-*, /dev/null, /dev/zero, /dev/[u]random, /dev/tty*, /dev/ptmx,
 *    /dev/vfio/...): the stat would reject them too, this just saves the call;
 *  - not shared libraries, nor *.log, *.pid, *.lock, *.sock, *.fifo.
 * A disk that fails this rule can still be named on the command line. */
int discovery__path_may_be_disk(const char *path)
{
	static const char *const skip_prefix[] = {
		"/memfd:", "/proc/", "/sys/", "/dev/shm/", "/dev/hugepages/",
		"/dev/mqueue/", "/dev/pts/", "/dev/net/", "/dev/vhost-", "/dev/tty",
		"/dev/vfio/", "/dev/kvm", "/dev/null", "/dev/zero", "/dev/random",
		"/dev/urandom", "/dev/ptmx",
	};
	static const char *const skip_suffix[] = {
		" (deleted)", ".log", ".pid", ".lock", ".sock", ".fifo",
	};

	if (!path || path[0] != '/')
		return 0;
	for (size_t i = 0; i < sizeof(skip_prefix) / sizeof(skip_prefix[0]); i++)
		if (has_prefix(path, skip_prefix[i]))
			return 0;
	for (size_t i = 0; i < sizeof(skip_suffix) / sizeof(skip_suffix[0]); i++)
		if (has_suffix(path, skip_suffix[i]))
			return 0;
	return !is_shared_lib(path);
}

/* ---- disks and NICs named on the command line ----------------------------- */

/* A value that names a host file, not "rbd:pool/img", "nbd://host",
 * "json:{...}" or libvirt's "/dev/fdset/N" (whose fd the scan sees anyway). */
static int is_local_path(const char *p)
{
	const char *slash = strchr(p, '/'), *colon = strchr(p, ':');

	if (!*p || strstr(p, "://") || has_prefix(p, "/dev/fdset/"))
		return 0;
	return !colon || (slash && slash < colon);
}

enum opt_kind { K_DRIVE, K_BLOCKDEV, K_PATH, K_VMM_DISK, K_NET, K_TAPNAME };

static const struct {
	const char *opt;
	enum opt_kind kind;
} dev_opts[] = {
	{ "drive", K_DRIVE },		/* QEMU: file=PATH */
	{ "blockdev", K_BLOCKDEV },	/* QEMU keyval form: filename=PATH */
	{ "hda", K_PATH }, { "hdb", K_PATH }, { "hdc", K_PATH }, { "hdd", K_PATH },
	{ "cdrom", K_PATH }, { "pflash", K_PATH }, { "sd", K_PATH },
	{ "disk", K_VMM_DISK },		/* cloud-hypervisor, vmload, crosvm */
	{ "rwdisk", K_VMM_DISK },	/* crosvm */
	{ "netdev", K_NET },		/* QEMU: tap,ifname=NAME */
	{ "net", K_NET },		/* QEMU -net tap,ifname=; cloud-hypervisor tap=NAME */
	{ "nic", K_NET },		/* QEMU -nic tap,ifname=; vmload tap=NAME */
	{ "tap-name", K_TAPNAME },	/* crosvm */
};

/* Emit what one option value names. `buf` is the caller's scratch space;
 * relative disk paths are emitted only where relative_ok. */
static void emit_value(enum opt_kind kind, const char *v, size_t vlen, int relative_ok,
		       char *buf, size_t buflen, discovery_arg_fn fn, void *ctx)
{
	size_t pos = 0;
	struct kv kv;
	int first = 1;

	if (kind == K_PATH || kind == K_TAPNAME) {
		if (!copy_out(buf, buflen, v, vlen))
			return;
		if (kind == K_TAPNAME)
			fn(ctx, DISCOVERY_ARG_NIC, buf);
		else if (is_local_path(buf) && (relative_ok || buf[0] == '/'))
			fn(ctx, DISCOVERY_ARG_DISK, buf);
		return;
	}
	while (kv_next(v, vlen, &pos, &kv)) {
		int disk = 0, nic = 0;

		switch (kind) {
		case K_DRIVE:
			disk = kv_key_is(&kv, "file");
			break;
		case K_BLOCKDEV:
			disk = kv_key_is(&kv, "filename");
			break;
		case K_VMM_DISK:
			disk = kv_key_is(&kv, "path") || kv_key_is(&kv, "file") ||
			       (first && !kv.key);
			break;
		case K_NET:
			nic = kv_key_is(&kv, "ifname") || kv_key_is(&kv, "tap");
			break;
		default:
			break;
		}
		first = 0;
		if ((!disk && !nic) || !copy_out(buf, buflen, kv.val, kv.vlen))
			continue;
		if (nic)
			fn(ctx, DISCOVERY_ARG_NIC, buf);
		else if (is_local_path(buf) && (relative_ok || buf[0] == '/'))
			fn(ctx, DISCOVERY_ARG_DISK, buf);
	}
}

/* QEMU -daemonize changes its directory to / once it has opened its disks,
 * so a relative path on its command line no longer names anything that can
 * be looked up: the disk is known from its open fd (by its absolute path),
 * and emitting the relative name as well would list it twice. */
static int is_daemonized(const char *cmdline, size_t len)
{
	struct arg_iter it = { cmdline, len, 0 };
	const char *arg;
	size_t alen;

	while (arg_next(&it, &arg, &alen))
		if ((alen == 10 && !memcmp(arg, "-daemonize", 10)) ||
		    (alen == 11 && !memcmp(arg, "--daemonize", 11)))
			return 1;
	return 0;
}

int discovery__parse_cmdline_devices(const char *cmdline, size_t len,
				     discovery_arg_fn fn, void *ctx)
{
	struct arg_iter it = { cmdline, len, 0 };
	const char *arg, *val;
	size_t alen, vlen;
	char buf[PATH_MAX];
	int n = 0, relative_ok;

	if (!fn)
		return -EINVAL;
	relative_ok = !is_daemonized(cmdline, len);
	if (!arg_next(&it, &arg, &alen))
		return 0;
	while (arg_next(&it, &arg, &alen)) {
		size_t i, nopts = sizeof(dev_opts) / sizeof(dev_opts[0]);
		int m = OPT_NO, dashes = 0;

		for (i = 0; i < nopts; i++) {
			m = opt_match(arg, alen, dev_opts[i].opt, &val, &vlen, &dashes);
			if (m != OPT_NO)
				break;
		}
		if (m == OPT_NO)
			continue;
		if (m == OPT_NEXT && !arg_next(&it, &val, &vlen))
			break;
		emit_value(dev_opts[i].kind, val, vlen, relative_ok, buf, sizeof(buf), fn, ctx);
		n++;
		/* cloud-hypervisor takes several values after one option:
		 * "--disk path=a path=b"; QEMU (one dash) never does. Only
		 * key=value words continue, so crosvm's trailing kernel path
		 * is not taken for a disk. */
		if (dashes == 2 && m == OPT_NEXT) {
			size_t save;

			for (;;) {
				save = it.pos;
				if (!arg_next(&it, &val, &vlen))
					break;
				if (!vlen || val[0] == '-' || !memchr(val, '=', vlen)) {
					it.pos = save;
					break;
				}
				emit_value(dev_opts[i].kind, val, vlen, relative_ok, buf, sizeof(buf), fn, ctx);
			}
		}
	}
	return n;
}

int discovery__parse_kvm_run_syscall(const char *syscall)
{
	unsigned long nr, fd, cmd;
	char *end;

	errno = 0;
	nr = strtoul(syscall, &end, 10);
	if (end == syscall || *end != ' ' || nr != 16)	/* __NR_ioctl on x86-64 */
		return -1;
	fd = strtoul(end + 1, &end, 16);
	if (*end != ' ' || fd > INT_MAX)
		return -1;
	cmd = strtoul(end + 1, &end, 16);
	if ((*end != ' ' && *end != '\n' && *end) || errno || cmd != 0xae80)	/* KVM_RUN */
		return -1;
	return (int)fd;
}
