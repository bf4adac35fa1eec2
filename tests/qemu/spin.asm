; A guest that only computes: a loop of LOOPS iterations (two instructions
; each, ~3 us here where guest code is emulated), then it stops QEMU. Its
; vCPU is busy in the guest the whole time: what vm.samples must see.
; Parameters: nasm -DLOOPS=N -f bin spin.asm
%ifndef LOOPS
%define LOOPS 1000000
%endif
%include "mb.inc"
mb_start:
	mov ecx, LOOPS
.spin:	dec ecx
	jnz .spin
	GUEST_DONE
mb_end:
mb_bss_end:
