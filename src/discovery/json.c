/* `kvmscope vms -j`: the VM list as JSON (jansson). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "collectors/collector.h"
#include "common/utf8.h"
#include "discovery/discovery.h"

/* jansson refuses strings that are not UTF-8, and names and paths come from
 * other processes' bytes (or were truncated mid-character): fall back to
 * '?' for every non-ASCII byte rather than dropping the field. */
static json_t *jstr(const char *s)
{
	char *clean;
	json_t *j;

	if (utf8__valid(s, strlen(s)))
		return json_string(s);
	clean = strdup(s);
	if (!clean)
		return NULL;
	utf8__sanitize(clean, strlen(clean));
	j = json_string(clean);
	free(clean);
	return j;
}

static json_t *vm_json(const struct vm_info *vm)
{
	json_t *o = json_object(), *vcpus = json_array(), *disks = json_array(),
	       *nics = json_array();
	char dev[32];

	if (!o || !vcpus || !disks || !nics)
		goto err;
	for (size_t i = 0; i < vm->nvcpus; i++)
		json_array_append_new(vcpus, json_pack("{s:i, s:i}",
			"index", vm->vcpus[i].index, "tid", (int)vm->vcpus[i].tid));
	for (size_t i = 0; i < vm->ndisks; i++) {
		const struct vm_disk *d = &vm->disks[i];

		snprintf(dev, sizeof(dev), "%u:%u", major(d->dev), minor(d->dev));
		json_array_append_new(disks, json_pack("{s:o, s:s, s:s, s:I, s:i, s:s}",
			"path", jstr(d->path), "type", d->is_block ? "block" : "file",
			"dev", dev, "ino", (json_int_t)d->ino, "fd", d->fd,
			"counted_at", disk__counted_at(d)));
	}
	for (size_t i = 0; i < vm->nnics; i++)
		json_array_append_new(nics, json_pack("{s:o}", "ifname", jstr(vm->nics[i].ifname)));
	json_object_set_new(o, "pid", json_integer(vm->pid));
	json_object_set_new(o, "name", jstr(vm->name));
	json_object_set_new(o, "uuid", vm->uuid[0] ? json_string(vm->uuid) : json_null());
	json_object_set_new(o, "vmid", vm->vmid[0] ? json_string(vm->vmid) : json_null());
	json_object_set_new(o, "comm", jstr(vm->comm));
	json_object_set_new(o, "vcpus", vcpus);
	json_object_set_new(o, "disks", disks);
	json_object_set_new(o, "nics", nics);
	return o;
err:
	json_decref(o);
	json_decref(vcpus);
	json_decref(disks);
	json_decref(nics);
	return NULL;
}

/* Returns a new reference the caller owns (json_decref), or NULL on ENOMEM. */
void *discovery__to_json(const struct vm_list *list)
{
	json_t *arr = json_array(), *o;

	if (!arr)
		return NULL;
	for (size_t i = 0; list && i < list->nvms; i++) {
		o = vm_json(&list->vms[i]);
		if (!o || json_array_append_new(arr, o)) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}
