# The guests the recording tests record, with work vmload reports exactly.
# Source after lib.sh.

# record_guest_exits NAME UUID TRUTH_JSON: in the background (pid in
# GUEST_PID), a 2-vCPU guest that starts after 2.5 s: vCPU 0 does 6000 port
# writes at 2500/s and 6 halts, vCPU 1 1500 port writes and 300 MMIO
# writes, and an IOAPIC interrupt (vector 0x31) reaches vCPU 0 at +250 ms
# of 5 seconds; it lingers 2 s after.
record_guest_exits() {
	"$VMLOAD" -name guest=$1 -uuid $2 --vcpus 2 --delay 2500 --linger 2000 \
		--pio vcpu=0,count=6000,rate=2500 --pio vcpu=1,count=1500 --mmio vcpu=1,count=300 \
		--hlt vcpu=0,count=6 \
		--irq vcpu=0,vector=0x31,via=ioapic,period_ms=1000,phase_ms=250,count=5 \
		> "$3" 2> "${3%.json}.err" &
	GUEST_PID=$!
	cleanup_pids+=($GUEST_PID)
}

# record_guest_disk NAME IMAGE TRUTH_JSON: in the background (GUEST_PID), a
# guest that reads 24 and writes 12 blocks of 8 KiB of IMAGE at 12/s.
record_guest_disk() {
	"$VMLOAD" -name guest=$1 --delay 2500 --linger 2000 \
		--disk file=$2,reads=24,writes=12,size=8192,rate=12 \
		> "$3" 2> "${3%.json}.err" &
	GUEST_PID=$!
	cleanup_pids+=($GUEST_PID)
}
