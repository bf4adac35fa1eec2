; A guest that only computes: a loop of LOOPS iterations (two instructions
; each, ~3 us here where guest code is emulated), then it stops QEMU. Its
; vCPU is busy in the guest the whole time: what vm.samples must see.
; With -DKERNEL_OUT it first writes the PIC's mask register (0x21): an exit
; KVM handles in the kernel, with no event at its end, so it stays open for
; the whole loop, across drains of the second it began in.
; Parameters: nasm -DLOOPS=N [-DKERNEL_OUT] -f bin spin.asm
%ifndef LOOPS
%define LOOPS 1000000
%endif
%include "mb.inc"
mb_start:
%ifdef KERNEL_OUT
	mov al, 0xff
	out 0x21, al
%endif
	mov ecx, LOOPS
.spin:	dec ecx
	jnz .spin
	GUEST_DONE
mb_end:
mb_bss_end:
