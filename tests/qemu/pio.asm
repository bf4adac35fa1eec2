; A SeaBIOS boot sector whose port I/O is known: OUTS writes then INS reads
; on PORT (a port no QEMU device claims, so every access is a userspace I/O
; exit), then it stops QEMU through isa-debug-exit (port 0xf4).
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
bits 16
org 0x7c00
	cli
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
.done:	mov dx, 0xf4		; isa-debug-exit: QEMU exits with (0 << 1) | 1
	xor al, al
	out dx, al
.hang:	hlt
	jmp .hang
	times 510 - ($ - $$) db 0
	dw 0xaa55
