; A guest whose port I/O is known: OUTS writes then INS reads on PORT (a
; port no QEMU device claims, so every access is a userspace I/O exit), then
; it stops QEMU through isa-debug-exit.
; Parameters: nasm -DPORT=0xe0 -DOUTS=N -DINS=M -f bin pio.asm
%ifndef PORT
%define PORT 0xe0
%endif
%ifndef OUTS
%define OUTS 1000
%endif
%ifndef INS
%define INS 500
%endif
%include "mb.inc"
mb_start:
	mov dx, PORT
	mov ecx, OUTS
	jecxz .ins
.out:	out dx, al
	dec ecx
	jnz .out
.ins:	mov ecx, INS
	jecxz .done
.in:	in al, dx
	dec ecx
	jnz .in
.done:	GUEST_DONE
mb_end:
mb_bss_end:
