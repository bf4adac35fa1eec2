; A guest whose disk I/O is known: READS one-sector ATA PIO reads (LBA 0,
; 1, ...) then WRITES one-sector writes (LBA 0, 1, ...) on the primary IDE
; master, each its own command, so QEMU does one host read or write per
; sector; then it stops QEMU through isa-debug-exit.
; Parameters: nasm -DREADS=N -DWRITES=M -f bin ide.asm
%ifndef READS
%define READS 40
%endif
%ifndef WRITES
%define WRITES 30
%endif
%include "mb.inc"
mb_start:
	mov dx, 0x3f6		; nIEN: no IRQ 14 (interrupts are off anyway)
	mov al, 2
	out dx, al
	xor ebx, ebx
	mov esi, READS
.rd:	test esi, esi
	jz .wr0
	mov al, 0x20		; READ SECTORS
	call ata_cmd
	call ata_drq
	mov dx, 0x1f0
	mov ecx, 256
	mov edi, buf
	rep insw
	inc ebx
	dec esi
	jmp .rd
.wr0:	xor ebx, ebx
	mov esi, WRITES
.wr:	test esi, esi
	jz .done
	mov al, 0x30		; WRITE SECTORS
	call ata_cmd
	call ata_drq
	mov dx, 0x1f0
	mov ecx, 256
	mov esi, buf
	rep outsw
	mov esi, [left]
	call ata_idle		; the host write has completed
	inc ebx
	dec esi
	mov [left], esi
	jmp .wr
.done:	GUEST_DONE

; ata_cmd: command AL on one sector at LBA EBX
ata_cmd:
	push eax
	call ata_idle
	mov [left], esi
	mov eax, ebx
	shr eax, 24
	and al, 0x0f
	or al, 0xe0
	mov dx, 0x1f6
	out dx, al
	mov dx, 0x1f2
	mov al, 1
	out dx, al
	mov eax, ebx
	mov dx, 0x1f3
	out dx, al
	shr eax, 8
	inc dx
	out dx, al
	shr eax, 8
	inc dx
	out dx, al
	pop eax
	mov dx, 0x1f7
	out dx, al
	ret
ata_drq:
	mov dx, 0x1f7
.w:	in al, dx
	test al, 0x80
	jnz .w
	test al, 0x08
	jz .w
	ret
ata_idle:
	mov dx, 0x1f7
.w:	in al, dx
	test al, 0x80
	jnz .w
	ret
left:	dd 0
buf:	times 512 db 0x5a
mb_end:
mb_bss_end:
