/* A VM whose interrupts are raised by KVM's irqfd worker, not by the VMM:
 * an irqfd on IOAPIC pin 17 (vector 0x41, vCPU 0). KVM cannot inject a
 * GSI from the eventfd wake-up, so every signal runs irqfd_inject() in a
 * kworker, which raises and lowers the line. Each signal is checked to have
 * reached vCPU 0's LAPIC (its IRR bit, cleared before the next one), so the
 * count printed is exactly the interrupts the IOAPIC delivered. The vCPU
 * never runs: only the raising side is exercised.
 * Usage: irqfd_driver --name NAME COUNT   (prints {"pid","name","raised"})
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "vm.h"

#define GSI    17
#define VECTOR 0x41
#define IRR(v) (0x200 + ((v) / 32) * 0x10)

static int lapic_irr_bit(int vcpu_fd, int clear)
{
	struct kvm_lapic_state s;
	uint32_t *irr = (uint32_t *)(s.regs + IRR(VECTOR)), bit = 1u << (VECTOR % 32);
	int set;

	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &s) < 0)
		return -errno;
	set = !!(*irr & bit);
	if (clear && set) {
		*irr &= ~bit;
		if (ioctl(vcpu_fd, KVM_SET_LAPIC, &s) < 0)
			return -errno;
	}
	return set;
}

int main(int argc, char **argv)
{
	struct kvm_lapic_state lapic;
	struct kvm_irqfd irqfd;
	char err[256];
	struct vm vm;
	long count, raised = 0;
	uint64_t one = 1;
	int efd = -1, rc = 1;

	if (argc != 4 || strcmp(argv[1], "--name") || (count = atol(argv[3])) < 1) {
		fprintf(stderr, "usage: irqfd_driver --name NAME COUNT\n");
		return 2;
	}
	if (vm__open(&vm, 1, 2u << 20, err, sizeof(err))) {
		fprintf(stderr, "irqfd_driver: %s\n", err);
		return 1;
	}
	if (vm__ioapic_route(&vm, GSI, VECTOR, 0)) {
		perror("irqfd_driver: IOAPIC route");
		goto out;
	}
	/* a software-disabled LAPIC refuses fixed interrupts */
	if (ioctl(vm.vcpus[0].fd, KVM_GET_LAPIC, &lapic) < 0) {
		perror("irqfd_driver: KVM_GET_LAPIC");
		goto out;
	}
	*(uint32_t *)(lapic.regs + 0xf0) = 0x1ff;
	if (ioctl(vm.vcpus[0].fd, KVM_SET_LAPIC, &lapic) < 0) {
		perror("irqfd_driver: KVM_SET_LAPIC");
		goto out;
	}
	efd = eventfd(0, EFD_CLOEXEC);
	memset(&irqfd, 0, sizeof(irqfd));
	irqfd.fd = efd;
	irqfd.gsi = GSI;
	if (efd < 0 || ioctl(vm.vm_fd, KVM_IRQFD, &irqfd) < 0) {
		perror("irqfd_driver: KVM_IRQFD");
		goto out;
	}
	for (long i = 0; i < count; i++) {
		struct timespec ts = { 0, 200000 };
		int r = lapic_irr_bit(vm.vcpus[0].fd, 1), tries;

		if (r < 0 || write(efd, &one, sizeof(one)) != sizeof(one)) {
			perror("irqfd_driver: signal");
			goto out;
		}
		for (tries = 0; tries < 5000 && (r = lapic_irr_bit(vm.vcpus[0].fd, 0)) == 0; tries++)
			nanosleep(&ts, NULL);
		if (r > 0)
			raised++;
		nanosleep(&ts, NULL);
	}
	printf("{\"pid\": %d, \"name\": \"%s\", \"raised\": %ld}\n", getpid(), argv[2], raised);
	rc = 0;
out:
	if (efd >= 0)
		close(efd);
	vm__close(&vm);
	return rc;
}
