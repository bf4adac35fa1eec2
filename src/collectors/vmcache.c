/* Attribution cache over discovery: see vmcache.h for why it exists. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collectors/vmcache.h"
#include "common/clock.h"
#include "common/log.h"

/* A VM that exited keeps its name for this long, so that the seconds drained
 * after its exit are still attributed to it by name. */
#define GONE_KEEP_SEC 120
#define GONE_MAX 256
#define MIN_RESCAN_MS 200

struct gone_vm {
	pid_t pid;
	char name[VM_NAME_MAX];
	char uuid[VM_UUID_MAX];
	char vmid[VM_VMID_MAX];
	int nvcpus;
	struct vm_vcpu vcpus[64];
	time_t gone_at;
};

struct vmcache {
	char proc_root[256];
	struct vm_list list;
	struct gone_vm gone[GONE_MAX];
	size_t ngone;
	struct timespec last_scan;
};

/* Caller owns the result. */
struct vmcache *vmcache__new(const char *proc_root)
{
	struct vmcache *vc = calloc(1, sizeof(*vc));

	if (!vc)
		return NULL;
	snprintf(vc->proc_root, sizeof(vc->proc_root), "%s", proc_root ? proc_root : "/proc");
	if (vmcache__refresh(vc))
		log_warn("vmcache", "first VM scan failed; retrying on demand");
	return vc;
}

void vmcache__free(struct vmcache *vc)
{
	if (!vc)
		return;
	discovery__free(&vc->list);
	free(vc);
}

static void remember_gone(struct vmcache *vc, const struct vm_info *vm)
{
	time_t now = time(NULL);
	struct gone_vm *g = NULL;

	for (size_t i = 0; i < vc->ngone; i++)
		if (vc->gone[i].pid == vm->pid || now - vc->gone[i].gone_at > GONE_KEEP_SEC) {
			g = &vc->gone[i];
			break;
		}
	if (!g)
		g = vc->ngone < GONE_MAX ? &vc->gone[vc->ngone++] : &vc->gone[now % GONE_MAX];
	g->pid = vm->pid;
	snprintf(g->name, sizeof(g->name), "%s", vm->name);
	snprintf(g->uuid, sizeof(g->uuid), "%s", vm->uuid);
	snprintf(g->vmid, sizeof(g->vmid), "%s", vm->vmid);
	g->nvcpus = vm->nvcpus < 64 ? (int)vm->nvcpus : 64;
	if (g->nvcpus)	/* a VM may have no vCPU yet: vcpus is NULL then */
		memcpy(g->vcpus, vm->vcpus, (size_t)g->nvcpus * sizeof(struct vm_vcpu));
	g->gone_at = now;
}

int vmcache__refresh(struct vmcache *vc)
{
	struct vm_list fresh = { 0 };
	int err = discovery__scan(vc->proc_root, &fresh);

	clock_gettime(CLOCK_MONOTONIC, &vc->last_scan);
	if (err)
		return err;
	/* VMs in the old list but not in the new one have exited: remember them. */
	for (size_t i = 0; i < vc->list.nvms; i++)
		if (!vm_list__find_pid(&fresh, vc->list.vms[i].pid))
			remember_gone(vc, &vc->list.vms[i]);
	discovery__free(&vc->list);
	vc->list = fresh;
	return 0;
}

int vmcache__refresh_if_older(struct vmcache *vc, long max_age_ms)
{
	if (clock__ms_since(&vc->last_scan) < max_age_ms)
		return 0;
	return vmcache__refresh(vc);
}

const struct vm_info *vmcache__vm(struct vmcache *vc, pid_t pid)
{
	const struct vm_info *vm = vm_list__find_pid(&vc->list, pid);

	if (vm)
		return vm;
	for (size_t i = 0; i < vc->ngone; i++)
		if (vc->gone[i].pid == pid)
			return NULL;	/* known to have exited: no rescan */
	if (clock__ms_since(&vc->last_scan) < MIN_RESCAN_MS)
		return NULL;
	if (vmcache__refresh(vc))
		return NULL;
	return vm_list__find_pid(&vc->list, pid);
}

static const struct gone_vm *find_gone(const struct vmcache *vc, pid_t pid)
{
	for (size_t i = 0; i < vc->ngone; i++)
		if (vc->gone[i].pid == pid)
			return &vc->gone[i];
	return NULL;
}

const char *vmcache__vm_name(struct vmcache *vc, pid_t pid, char *buf, size_t len)
{
	const struct vm_info *vm = vmcache__vm(vc, pid);
	const struct gone_vm *g;

	if (vm)
		snprintf(buf, len, "%s", vm->name);
	else if ((g = find_gone(vc, pid)))
		snprintf(buf, len, "%s", g->name);
	else
		snprintf(buf, len, "pid:%d", (int)pid);
	return buf;
}

int vmcache__vcpu(struct vmcache *vc, pid_t pid, pid_t tid)
{
	const struct vm_info *vm = vmcache__vm(vc, pid);
	const struct gone_vm *g;
	int idx;

	if (vm) {
		idx = vm_info__vcpu_of_tid(vm, tid);
		/* a vCPU thread renamed or started after the last scan: rescan once */
		if (idx < 0 && clock__ms_since(&vc->last_scan) >= MIN_RESCAN_MS && !vmcache__refresh(vc) &&
		    (vm = vm_list__find_pid(&vc->list, pid)))
			idx = vm_info__vcpu_of_tid(vm, tid);
		return idx;
	}
	if ((g = find_gone(vc, pid)))
		for (int i = 0; i < g->nvcpus; i++)
			if (g->vcpus[i].tid == tid)
				return g->vcpus[i].index;
	return -1;
}

/* Names are what records carry; a VM's other identities follow its name.
 * Linear: a host has tens of VMs, and the hub asks once per record only for
 * instrumentations that use uuid or vmid. */
int vmcache__identity(const struct vmcache *vc, const char *name, const char **uuid,
		      const char **vmid)
{
	*uuid = *vmid = NULL;
	if (!name)
		return -ENOENT;
	for (size_t i = 0; i < vc->list.nvms; i++) {
		const struct vm_info *vm = &vc->list.vms[i];

		if (!strcmp(vm->name, name)) {
			*uuid = vm->uuid[0] ? vm->uuid : NULL;
			*vmid = vm->vmid[0] ? vm->vmid : NULL;
			return 0;
		}
	}
	for (size_t i = 0; i < vc->ngone; i++) {
		const struct gone_vm *g = &vc->gone[i];

		if (!strcmp(g->name, name)) {
			*uuid = g->uuid[0] ? g->uuid : NULL;
			*vmid = g->vmid[0] ? g->vmid : NULL;
			return 0;
		}
	}
	return -ENOENT;
}

const struct vm_list *vmcache__list(struct vmcache *vc)
{
	return &vc->list;
}
