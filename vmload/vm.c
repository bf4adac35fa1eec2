#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static void seterr(char *errmsg, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *errmsg, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errmsg, errlen, fmt, ap);
	va_end(ap);
}

/* On success vm owns kvm_fd, vm_fd, the RAM mapping, the CPUID table and
 * every vCPU fd and kvm_run mapping; vm__close() releases them. */
int vm__open(struct vm *vm, int nr_vcpus, size_t mem_size, char *errmsg, size_t errlen)
{
	struct kvm_userspace_memory_region region;
	int err, i, run_size;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	for (i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		err = -errno;
		if (errno == ENOENT)
			seterr(errmsg, errlen, "/dev/kvm does not exist: this host offers no KVM (load kvm_intel/kvm_amd or enable virtualization)");
		else if (errno == EACCES || errno == EPERM)
			seterr(errmsg, errlen, "/dev/kvm: permission denied (run as root or join the kvm group)");
		else
			seterr(errmsg, errlen, "/dev/kvm: %s", strerror(errno));
		goto err_out;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		err = -EINVAL;
		seterr(errmsg, errlen, "/dev/kvm: unexpected KVM API version");
		goto err_close;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		err = -errno;
		seterr(errmsg, errlen, "KVM_CREATE_VM: %s", strerror(errno));
		goto err_close;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		err = -errno;
		seterr(errmsg, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		goto err_close;
	}
	vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED) {
		err = -errno;
		vm->mem = NULL;
		seterr(errmsg, errlen, "guest RAM (%zu bytes): %s", mem_size, strerror(errno));
		goto err_close;
	}
	vm->mem_size = mem_size;
	memset(&region, 0, sizeof(region));
	region.memory_size = mem_size;
	region.userspace_addr = (uintptr_t)vm->mem;
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		err = -errno;
		seterr(errmsg, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
		goto err_close;
	}
	vm->cpuid = calloc(1, sizeof(*vm->cpuid) + 256 * sizeof(struct kvm_cpuid_entry2));
	if (!vm->cpuid) {
		err = -ENOMEM;
		seterr(errmsg, errlen, "out of memory");
		goto err_close;
	}
	vm->cpuid->nent = 256;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid) < 0) {
		err = -errno;
		seterr(errmsg, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		goto err_close;
	}
	run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0) {
		err = -EINVAL;
		seterr(errmsg, errlen, "KVM_GET_VCPU_MMAP_SIZE failed");
		goto err_close;
	}
	for (i = 0; i < nr_vcpus; i++) {
		struct vm_vcpu *v = &vm->vcpus[i];

		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0) {
			err = -errno;
			seterr(errmsg, errlen, "KVM_CREATE_VCPU %d: %s", i, strerror(errno));
			goto err_close;
		}
		vm->nr_vcpus = i + 1;
		v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			err = -errno;
			v->run = NULL;
			seterr(errmsg, errlen, "mmap kvm_run of vCPU %d: %s", i, strerror(errno));
			goto err_close;
		}
		v->run_size = run_size;
	}
	return 0;

err_close:
	vm__close(vm);
err_out:
	return err;
}

void vm__close(struct vm *vm)
{
	int i;

	for (i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, vm->vcpus[i].run_size);
		if (vm->vcpus[i].fd >= 0)
			close(vm->vcpus[i].fd);
		vm->vcpus[i].run = NULL;
		vm->vcpus[i].fd = -1;
	}
	if (vm->mem)
		munmap(vm->mem, vm->mem_size);
	vm->mem = NULL;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	vm->nr_vcpus = 0;
	free(vm->cpuid);
	vm->cpuid = NULL;
}

static void flat_segment(struct kvm_segment *s, uint16_t selector, uint8_t type)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = selector;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->db = 1;
	s->s = 1;
	s->g = 1;
}

int vm__vcpu_boot(struct vm *vm, int index, const struct vm_boot *boot)
{
	int fd = vm->vcpus[index].fd;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

	/* Without a CPUID, KVM treats PAE/long mode features as absent. */
	if (ioctl(fd, KVM_SET_CPUID2, vm->cpuid) < 0)
		return -errno;
	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	flat_segment(&sregs.cs, 0x08, 0xb);	/* code, execute/read, accessed */
	sregs.cs.l = 1;
	sregs.cs.db = 0;
	flat_segment(&sregs.ds, 0x10, 0x3);	/* data, read/write, accessed */
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	/* long mode wants a usable 64-bit TSS even if nothing switches stacks */
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.base = boot->tss_base;
	sregs.tr.limit = 0x67;
	sregs.tr.selector = 0x18;
	sregs.tr.type = 11;
	sregs.tr.present = 1;
	sregs.gdt.base = boot->gdt_base;
	sregs.gdt.limit = boot->gdt_limit;
	sregs.idt.base = boot->idt_base;
	sregs.idt.limit = boot->idt_limit;
	sregs.cr0 = 0x80000011;		/* PG | ET | PE */
	sregs.cr4 = 0x20;		/* PAE */
	sregs.cr3 = boot->cr3;
	sregs.efer = 0x500;		/* LME | LMA */
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = boot->rip;
	regs.rsp = boot->rsp;
	regs.rflags = 0x2;		/* IF=0 until the guest's own STI */
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	/* APs wait for INIT/SIPI under an in-kernel irqchip; start them directly. */
	if (ioctl(fd, KVM_SET_MP_STATE, &mp) < 0)
		return -errno;
	return 0;
}

int vm__create_pit(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = 0 };

	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return -errno;
	return 0;
}

int vm__pic_program(struct vm *vm, uint8_t base, uint8_t unmask_lines)
{
	struct kvm_irqchip chip;
	int id;

	for (id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_PIC_SLAVE; id++) {
		struct kvm_pic_state *p = &chip.chip.pic;

		memset(&chip, 0, sizeof(chip));
		chip.chip_id = id;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return -errno;
		p->init_state = 0;
		p->init4 = 1;
		p->auto_eoi = 1;
		p->elcr = 0;
		if (id == KVM_IRQCHIP_PIC_MASTER) {
			p->irq_base = base;
			p->imr = (uint8_t)~unmask_lines;
		} else {
			p->irq_base = (uint8_t)(base + 8);
			p->imr = 0xff;
		}
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return -errno;
	}
	return 0;
}

int vm__ioapic_route(struct vm *vm, int line, uint8_t vector, uint8_t dest_apic)
{
	struct kvm_irqchip chip;

	if (line < 0 || line >= KVM_IOAPIC_NUM_PINS)
		return -EINVAL;
	memset(&chip, 0, sizeof(chip));
	chip.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
		return -errno;
	chip.chip.ioapic.redirtbl[line].bits = 0;
	chip.chip.ioapic.redirtbl[line].fields.vector = vector;
	chip.chip.ioapic.redirtbl[line].fields.dest_id = dest_apic;
	if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
		return -errno;
	return 0;
}

int vm__irq_pulse(struct vm *vm, int line)
{
	struct kvm_irq_level lvl = { .irq = line, .level = 1 };
	int delivered;

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE_STATUS, &lvl) < 0)
		return -errno;
	delivered = lvl.status;
	lvl.irq = line;
	lvl.level = 0;
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE_STATUS, &lvl) < 0)
		return -errno;
	return delivered > 0 ? delivered : 0;
}

int vm__signal_msi(struct vm *vm, uint8_t dest_apic, uint8_t vector)
{
	struct kvm_msi msi;
	int r;

	memset(&msi, 0, sizeof(msi));
	msi.address_lo = 0xfee00000u | ((uint32_t)dest_apic << 12);
	msi.data = vector;	/* fixed delivery, edge */
	r = ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi);
	if (r < 0)
		return -errno;
	return r;
}
