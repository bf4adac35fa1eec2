; A guest that takes a known number of PIT interrupts: it sets the 8259
; PIC up itself (vector base VECTOR, IRQ0 only), programs PIT channel 0 as a
; rate generator at HZ and halts until its IRQ0 handler has run COUNT times.
; The handler EOIs all but the COUNT-th; KVM's in-kernel PIT (reinject mode,
; QEMU's default) raises IRQ0 again only after an EOI, so it raises exactly
; COUNT, and every one it raised is one this guest took. The COUNT-th masks
; every line and stops the PIT (mode 5 waits for a gate edge that never
; comes): a tick left pending would be raised once more at teardown.
; The handler never IRETs: this host's KVM emulates this guest's code (no
; paging, no unrestricted guest) and its emulator cannot IRET in protected
; mode. Interrupts are only ever enabled around the HLT of the wait loop, so
; the handler drops the interrupt frame and goes back to that loop.
; Parameters: nasm -DVECTOR=0xNN -DHZ=H -DCOUNT=N -f bin pit.asm
%ifndef VECTOR
%define VECTOR 0x30
%endif
%ifndef HZ
%define HZ 100
%endif
%ifndef COUNT
%define COUNT 200
%endif
%define DIVISOR (1193182 / HZ)
%include "mb.inc"
mb_start:
	cli
	; one 32-bit interrupt gate for VECTOR, in the code segment the loader left
	mov eax, irq0
	mov [idt + VECTOR * 8], ax
	mov ax, cs
	mov [idt + VECTOR * 8 + 2], ax
	mov word [idt + VECTOR * 8 + 4], 0x8e00
	shr eax, 16
	mov [idt + VECTOR * 8 + 6], ax
	lidt [idtr]
	; master PIC: ICW1 (edge, cascade, ICW4), ICW2 vector base, ICW3 slave
	; on IR2, ICW4 8086 mode, OCW1 IRQ0 only; the slave: every line masked
	mov al, 0x11
	out 0x20, al
	out 0xa0, al
	mov al, VECTOR
	out 0x21, al
	mov al, VECTOR + 8
	out 0xa1, al
	mov al, 0x04
	out 0x21, al
	mov al, 0x02
	out 0xa1, al
	mov al, 0x01
	out 0x21, al
	out 0xa1, al
	mov al, 0xff
	out 0xa1, al
	mov al, 0xfe
	out 0x21, al
	; PIT channel 0, lobyte/hibyte, mode 2
	mov al, 0x34
	out 0x43, al
	mov al, DIVISOR & 0xff
	out 0x40, al
	mov al, DIVISOR >> 8
	out 0x40, al
.wait:	cli
	cmp dword [taken], COUNT
	jae .done
	sti			; its shadow keeps the wake-up until HLT
	hlt
	jmp .wait
.done:	GUEST_DONE

irq0:	add esp, 12		; EIP, CS, EFLAGS of the HLT it woke
	inc dword [taken]
	cmp dword [taken], COUNT
	jae .last
	mov al, 0x20		; OCW2: non-specific EOI
	out 0x20, al
	jmp mb_start.wait
.last:	mov al, 0xff
	out 0x21, al
	mov al, 0x3a		; channel 0, lo/hi, mode 5
	out 0x43, al
	xor al, al
	out 0x40, al
	out 0x40, al
	jmp mb_start.wait

idtr:	dw 256 * 8 - 1
	dd idt
taken:	dd 0
mb_end:
section .bss follows=.text nobits
alignb 8
idt:	resb 256 * 8
mb_bss_end:
