; A guest whose NIC traffic is known, on an ISA NE2000 driven by port I/O
; only (no interrupts, no DMA of the host's): it starts the NIC, says
; "ready" on the debug console (isa-debugcon, port 0xe9), and waits for a
; byte on COM1 from the harness. Each 'g' sends TX frames of SIZE bytes, one
; at a time, each polled to transmit-complete; all along it counts every
; frame it receives; on 'q' it prints "tx FRAMES BYTES" and "rx FRAMES
; BYTES" (what the NIC reported: sent frames whose TSR says PTX, received
; frames by their ring headers' lengths) on the debug console and stops
; QEMU.
; Frames sent: broadcast dst, src 02:6b:76:6d:01:00, type 0x88b5 (local
; experimental), then a 0x5a fill.
; Parameters: nasm -DTX=N -DSIZE=L -DNE=0x300 -f bin nic.asm (60 <= L <= 1514)
%ifndef TX
%define TX 10
%endif
%if TX < 1
%error "TX must be at least 1"
%endif
%ifndef SIZE
%define SIZE 200
%endif
%ifndef NE
%define NE 0x300
%endif
%if SIZE < 60 || SIZE > 1514
%error "SIZE must be 60..1514 (an Ethernet frame without its FCS)"
%endif
; page 0 registers
NE_CR	equ NE + 0x00
NE_PSTART	equ NE + 0x01
NE_PSTOP	equ NE + 0x02
NE_BNRY	equ NE + 0x03
NE_TPSR	equ NE + 0x04	; write; read: TSR
NE_TSR	equ NE + 0x04
NE_TBCR0	equ NE + 0x05
NE_TBCR1	equ NE + 0x06
NE_ISR	equ NE + 0x07
NE_RSAR0	equ NE + 0x08
NE_RSAR1	equ NE + 0x09
NE_RBCR0	equ NE + 0x0a
NE_RBCR1	equ NE + 0x0b
NE_RCR	equ NE + 0x0c
NE_TCR	equ NE + 0x0d
NE_DCR	equ NE + 0x0e
NE_IMR	equ NE + 0x0f
NE_CURR	equ NE + 0x07	; page 1
NE_DATA	equ NE + 0x10
NE_RESET	equ NE + 0x1f
; CR bits
CR_STP	equ 0x01
CR_STA	equ 0x02
CR_TXP	equ 0x04
CR_RRD	equ 0x08	; remote read
CR_RWR	equ 0x10	; remote write
CR_NODMA equ 0x20
CR_PS1	equ 0x40	; register page 1
; ISR bits
ISR_PRX	equ 0x01
ISR_PTX	equ 0x02
ISR_TXE	equ 0x08
ISR_RDC	equ 0x40
; NIC memory pages (256 bytes): one TX buffer, then the RX ring
TX_PAGE	equ 0x40
RX_FIRST equ 0x46
RX_STOP	equ 0x80
COM1	equ 0x3f8
CON	equ 0xe9

%include "mb.inc"
mb_start:
	mov dx, NE_RESET		; reading the reset port resets the NIC
	in al, dx
	out dx, al
	mov dx, NE_CR
	mov al, CR_STP | CR_NODMA
	out dx, al
	mov dx, NE_DCR
	mov al, 0x49		; word-wide data port, normal operation
	out dx, al
	mov dx, NE_RBCR0
	xor al, al
	out dx, al
	inc dx
	out dx, al
	mov dx, NE_RCR
	mov al, 0x14		; promiscuous and broadcast: every frame
	out dx, al
	mov dx, NE_TCR
	xor al, al
	out dx, al
	mov dx, NE_PSTART
	mov al, RX_FIRST
	out dx, al
	mov dx, NE_PSTOP
	mov al, RX_STOP
	out dx, al
	; QEMU's NE2000 takes BNRY as the first page not yet read (the ring is
	; empty when CURR == BNRY): both start at the ring's first page
	mov dx, NE_BNRY
	mov al, RX_FIRST
	out dx, al
	mov dx, NE_ISR
	mov al, 0xff
	out dx, al
	mov dx, NE_IMR		; no interrupts: everything is polled
	xor al, al
	out dx, al
	mov dx, NE_CR
	mov al, CR_PS1 | CR_STP | CR_NODMA
	out dx, al
	mov dx, NE_CURR
	mov al, RX_FIRST
	out dx, al
	mov dx, NE_CR
	mov al, CR_STA | CR_NODMA
	out dx, al
	mov esi, s_ready
	call con_str

.wait:	call rx_poll
	call com_byte
	cmp al, 'q'
	je .quit
	cmp al, 'g'
	jne .wait
	mov ebx, TX
.tx:	call tx_frame
	dec ebx
	jnz .tx
	jmp .wait
.quit:	call rx_poll		; all the harness sent had arrived before 'q'

	mov esi, s_tx
	call con_str
	mov eax, [tx_frames]
	call con_dec
	mov al, ' '
	out CON, al
	mov eax, [tx_bytes]
	call con_dec
	mov esi, s_rx
	call con_str
	mov eax, [rx_frames]
	call con_dec
	mov al, ' '
	out CON, al
	mov eax, [rx_bytes]
	call con_dec
	mov al, 10
	out CON, al
	GUEST_DONE

; tx_frame: copy the frame into the TX page by remote DMA, transmit it and
; poll until the NIC reports it done; counted when TSR says sent (PTX)
tx_frame:
	mov dx, NE_RSAR0
	xor al, al
	out dx, al
	inc dx
	mov al, TX_PAGE
	out dx, al
	mov dx, NE_RBCR0
	mov al, (SIZE + 1) & 0xfe & 0xff
	out dx, al
	inc dx
	mov al, ((SIZE + 1) & 0xfffe) >> 8
	out dx, al
	mov dx, NE_CR
	mov al, CR_STA | CR_RWR
	out dx, al
	mov dx, NE_DATA
	mov esi, frame
	mov ecx, (SIZE + 1) / 2
	rep outsw
	mov dx, NE_ISR
.rdc:	in al, dx
	test al, ISR_RDC
	jz .rdc
	mov al, ISR_RDC
	out dx, al
	mov dx, NE_TPSR
	mov al, TX_PAGE
	out dx, al
	mov dx, NE_TBCR0
	mov al, SIZE & 0xff
	out dx, al
	inc dx
	mov al, SIZE >> 8
	out dx, al
	mov dx, NE_CR
	mov al, CR_STA | CR_TXP | CR_NODMA
	out dx, al
	mov dx, NE_ISR
.done:	in al, dx
	test al, ISR_PTX | ISR_TXE
	jz .done
	mov al, ISR_PTX | ISR_TXE
	out dx, al
	mov dx, NE_TSR
	in al, dx
	test al, 0x01		; PTX: sent without error
	jz .out
	inc dword [tx_frames]
	add dword [tx_bytes], SIZE
.out:	ret

; rx_poll: count every frame in the ring (from BNRY up to CURR) by its
; header (status, next page, length including the 4-byte header), then
; give the pages back by moving BNRY
rx_poll:
	mov dx, NE_ISR
	mov al, ISR_PRX
	out dx, al
.next:	mov dx, NE_CR
	mov al, CR_PS1 | CR_STA | CR_NODMA
	out dx, al
	mov dx, NE_CURR
	in al, dx
	mov ah, al
	mov dx, NE_CR
	mov al, CR_STA | CR_NODMA
	out dx, al
	cmp ah, [rx_page]
	je .out
	mov dx, NE_RSAR0
	xor al, al
	out dx, al
	inc dx
	mov al, [rx_page]
	out dx, al
	mov dx, NE_RBCR0
	mov al, 4
	out dx, al
	inc dx
	xor al, al
	out dx, al
	mov dx, NE_CR
	mov al, CR_STA | CR_RRD
	out dx, al
	mov dx, NE_DATA
	in ax, dx		; status, next page
	mov [rx_page], ah
	in ax, dx		; length, header included
	movzx eax, ax
	sub eax, 4
	add [rx_bytes], eax
	inc dword [rx_frames]
	mov dx, NE_ISR
	mov al, ISR_RDC
	out dx, al
	mov dx, NE_BNRY
	mov al, [rx_page]
	out dx, al
	jmp .next
.out:	ret

; com_byte: AL = the byte waiting on COM1, or 0; a short pause first, so
; that waiting costs fewer exits
com_byte:
	mov ecx, 200
.pause:	dec ecx
	jnz .pause
	mov dx, COM1 + 5	; LSR
	in al, dx
	test al, 0x01		; data ready
	jz .none
	mov dx, COM1
	in al, dx
	ret
.none:	xor al, al
	ret

; con_str: print the NUL-terminated string at ESI
con_str:
	lodsb
	test al, al
	jz .out
	out CON, al
	jmp con_str
.out:	ret

; con_dec: print EAX in decimal
con_dec:
	mov edi, dec_end
	mov ecx, 10
.div:	xor edx, edx
	div ecx
	add dl, '0'
	dec edi
	mov [edi], dl
	test eax, eax
	jnz .div
	mov esi, edi
	jmp con_str

s_ready: db "ready", 10, 0
s_tx:	db "tx ", 0
s_rx:	db 10, "rx ", 0
tx_frames: dd 0
tx_bytes: dd 0
rx_frames: dd 0
rx_bytes: dd 0
rx_page: db RX_FIRST
dec_buf: times 10 db 0
dec_end: db 0
align 2
frame:	db 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
	db 0x02, 0x6b, 0x76, 0x6d, 0x01, 0x00
	db 0x88, 0xb5
	times SIZE - 14 db 0x5a
	db 0			; the odd byte of an odd SIZE's last word
mb_end:
mb_bss_end:
