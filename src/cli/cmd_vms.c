/* kvmscope vms: the VMs on this host, whatever their VMM. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "discovery/discovery.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmscope vms [-j] [-P DIR] [-h]\n"
		"\n"
		"List the VMs on this host: every process holding a KVM VM fd, whatever\n"
		"its VMM (QEMU, Firecracker, Cloud Hypervisor, crosvm, vmload, ...).\n"
		"NAME comes from -name/--name on the VMM's command line, else pid:<pid>;\n"
		"VMID is Proxmox's (-id N, or -pidfile .../qemu-server/N.pid), UUID QEMU's\n"
		"-uuid (libvirt, OpenStack); '-' when the VMM gives none.\n"
		"VCPUS counts vCPU fds and vCPU threads; DISKS are the block devices and\n"
		"image files it has open or names on its command line; NICS are its taps.\n"
		"\n"
		"  -j, --json           print a JSON array, one object per VM:\n"
		"                       {pid, name, uuid, vmid, comm, vcpus:[{index, tid}],\n"
		"                        disks:[{path, type, dev, ino, fd, counted_at}],\n"
		"                        nics:[{ifname}]}; counted_at: where vm.disk_* counts\n"
		"                        the disk: vmm (the VMM's syscalls, AIO or io_uring on\n"
		"                        its fd), rq / bio (a block device it does not hold\n"
		"                        open: its requests / bios), none (not open)\n"
		"  -P, --proc-root DIR  read DIR instead of /proc\n"
		"  -h, --help           this help\n"
		"\n"
		"Without root, other users' VMs are hidden (a note on stderr says so).\n"
		"Exit status: 0 ok (also when there are no VMs), 1 error, 2 usage.\n");
}

/* Comma-joined disk paths or NIC names of vm into buf ("-" when none). */
static const char *join_disks(const struct vm_info *vm, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < vm->ndisks && o < len; i++)
		o += snprintf(buf + o, len - o, "%s%s", i ? "," : "", vm->disks[i].path);
	return buf[0] ? buf : "-";
}

static const char *join_nics(const struct vm_info *vm, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < vm->nnics && o < len; i++)
		o += snprintf(buf + o, len - o, "%s%s", i ? "," : "", vm->nics[i].ifname);
	return buf[0] ? buf : "-";
}

static void print_table(const struct vm_list *list)
{
	char disks[4096], nics[512];
	int namew = 4, diskw = 5;

	for (size_t i = 0; i < list->nvms; i++) {
		int n = (int)strlen(list->vms[i].name);
		int d = (int)strlen(join_disks(&list->vms[i], disks, sizeof(disks)));

		namew = n > namew ? n : namew;
		diskw = d > diskw ? d : diskw;
	}
	printf("%7s  %-*s  %5s  %-*s  %-8s  %6s  %s\n", "PID", namew, "NAME", "VCPUS", diskw,
	       "DISKS", "NICS", "VMID", "UUID");
	for (size_t i = 0; i < list->nvms; i++) {
		const struct vm_info *vm = &list->vms[i];

		printf("%7d  %-*s  %5zu  %-*s  %-8s  %6s  %s\n", (int)vm->pid, namew, vm->name,
		       vm->nvcpus, diskw, join_disks(vm, disks, sizeof(disks)),
		       join_nics(vm, nics, sizeof(nics)), vm->vmid[0] ? vm->vmid : "-",
		       vm->uuid[0] ? vm->uuid : "-");
	}
}

int cmd_vms(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "proc-root", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *proc_root = "/proc";
	struct vm_list list;
	int json = 0, c, err, ret = 1;
	json_t *arr;

	optind = 0;	/* glibc: full re-initialisation */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "jP:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 'P':
			proc_root = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (optopt == 'P')
				fprintf(stderr, "kvmscope vms: option -P/--proc-root needs a directory\n");
			else if (optopt)
				fprintf(stderr, "kvmscope vms: unknown option '-%c'\n", optopt);
			else
				fprintf(stderr, "kvmscope vms: unknown option '%s'\n", argv[optind - 1]);
			fprintf(stderr, "try 'kvmscope vms --help'\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmscope vms: unexpected argument '%s'\n", argv[optind]);
		fprintf(stderr, "try 'kvmscope vms --help'\n");
		return 2;
	}

	err = discovery__scan(proc_root, &list);
	if (err) {
		fprintf(stderr, "kvmscope vms: cannot scan '%s': %s\n", proc_root, strerror(-err));
		return 1;
	}
	/* always said when not root: with /proc mounted hidepid=, other users'
	 * processes are not even counted as unreadable */
	if (geteuid())
		fprintf(stderr, "kvmscope vms: note: not root: other users' VMs may be hidden "
			"(the open files of %zu process%s could not be read)\n", list.nunreadable,
			list.nunreadable == 1 ? "" : "es");
	else if (list.nunreadable)
		fprintf(stderr, "kvmscope vms: note: the open files of %zu process%s are denied "
			"even to root (another user namespace or a security module); a VM among "
			"them would not be listed\n", list.nunreadable,
			list.nunreadable == 1 ? "" : "es");
	if (json) {
		arr = discovery__to_json(&list);
		if (!arr || json_dumpf(arr, stdout, JSON_INDENT(2)) || putchar('\n') == EOF) {
			fprintf(stderr, "kvmscope vms: cannot write the JSON\n");
			json_decref(arr);
			goto out;
		}
		json_decref(arr);
	} else {
		print_table(&list);
	}
	ret = fflush(stdout) ? 1 : 0;
out:
	discovery__free(&list);
	return ret;
}
