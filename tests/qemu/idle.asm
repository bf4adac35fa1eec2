; A guest that stays up doing nothing: halted with interrupts off, so it
; costs no host CPU while the harness inspects its QEMU (discovery checks).
%include "mb.inc"
mb_start:
.hang:	cli
	hlt
	jmp .hang
mb_end:
mb_bss_end:
