/* Attribution of kernel data (pid, tid, device, inode, interface) to VMs.
 *
 * Wraps discovery with a cache: lookups of a pid not seen yet trigger one
 * rescan (at most once per `min_rescan_ms`), and VMs that exited stay known
 * for a while so that their last second still gets their name. Not
 * thread-safe: one owner (the drain loop).
 */
#ifndef KVMSCOPE_COLLECTORS_VMCACHE_H
#define KVMSCOPE_COLLECTORS_VMCACHE_H

#include <sys/types.h>

#include "discovery/discovery.h"

struct vmcache;

/* Caller owns the result; free with vmcache__free. */
struct vmcache *vmcache__new(const char *proc_root);
void vmcache__free(struct vmcache *vc);
/* Rescan now. 0 or -errno. */
int vmcache__refresh(struct vmcache *vc);
/* Rescan if the last scan is older than max_age_ms. 0 or -errno. */
int vmcache__refresh_if_older(struct vmcache *vc, long max_age_ms);
/* The VM of process pid, rescanning once if unknown; NULL if not a VM. The
 * pointer is valid until the next refresh. */
const struct vm_info *vmcache__vm(struct vmcache *vc, pid_t pid);
/* Name of pid's VM ("pid:<pid>" if unknown), written into buf. */
const char *vmcache__vm_name(struct vmcache *vc, pid_t pid, char *buf, size_t len);
/* vCPU index of thread tid in process pid, or -1. */
int vmcache__vcpu(struct vmcache *vc, pid_t pid, pid_t tid);
/* UUID and VMID of the VM named `name` (alive, or gone recently): NULL
 * where the VMM gave none. Pointers valid until the next refresh. 0, or
 * -ENOENT when no VM has that name. */
int vmcache__identity(const struct vmcache *vc, const char *name, const char **uuid,
		      const char **vmid);
/* The current list (valid until the next refresh). */
const struct vm_list *vmcache__list(struct vmcache *vc);

#endif
