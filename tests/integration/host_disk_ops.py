#!/usr/bin/env python3
"""The truth of a VMM's disk operations, from `strace -f` of the VMM.

usage: host_disk_ops.py STRACE_OUTPUT DISK_PATH

Prints JSON {"read": [ops, bytes], "write": [...], "flush": [...],
"discard": [...]}: the operations the VMM issued on the fd it opened
DISK_PATH read-write with (its last such open), counted the way kvmscope
defines a disk op: one per positional read/write syscall, one per iocb of
io_submit, fdatasync/fsync as flush, fallocate as write (zero range) or
discard (punch hole). strace reads syscall arguments with ptrace, so this
truth owes nothing to BPF.

Counted only after the process opened /dev/kvm (before it, it is not a VM
yet and no tool could book its I/O to one) and only in threads other than
the main thread (the first in the output: strace's execve of the VMM):
there QEMU probes an O_DIRECT fd's alignment the moment it
opens it, microseconds before any discovery could know the fd. The guest's
operations run in vCPU threads (io_submit, io_uring) or thread-pool workers.
"""
import json
import re
import sys

OPS = {"pread64": "read", "preadv": "read", "preadv2": "read",
       "pwrite64": "write", "pwritev": "write", "pwritev2": "write",
       "fdatasync": "flush", "fsync": "flush"}
IOCB = {"IOCB_CMD_PREAD": "read", "IOCB_CMD_PREADV": "read",
        "IOCB_CMD_PWRITE": "write", "IOCB_CMD_PWRITEV": "write",
        "IOCB_CMD_FSYNC": "flush", "IOCB_CMD_FDSYNC": "flush"}


def iov_bytes(text):
    return sum(int(n) for n in re.findall(r"iov_len=(\d+)", text))


def main(path, disk):
    fd = None
    main_pid = None
    vm = False
    out = {k: [0, 0] for k in ("read", "write", "flush", "discard")}
    line_re = re.compile(r"^(\d+)\s+(\w+)\((.*)$")
    for line in open(path, errors="replace"):
        m = line_re.match(line)
        if not m:
            continue		# "<... resumed>" halves and exits: counted at entry
        tid, call, rest = int(m.group(1)), m.group(2), m.group(3)
        if main_pid is None:
            main_pid = tid
        if call == "openat":
            if '"/dev/kvm"' in rest:
                vm = True
            elif '"%s"' % disk in rest and "O_RDWR" in rest:
                r = re.search(r"= (\d+)$", rest.strip())
                if r:
                    fd = int(r.group(1))
            continue
        if fd is None or not vm or tid == main_pid:
            continue
        if call in OPS:
            a = re.match(r"(\d+)[,)]", rest)
            if not a or int(a.group(1)) != fd:
                continue
            kind = OPS[call]
            if call in ("pread64", "pwrite64"):
                n = re.match(r"\d+, .*, (\d+), \d+\)", rest)
                size = int(n.group(1)) if n else 0
            else:
                size = iov_bytes(rest)
            out[kind][0] += 1
            out[kind][1] += size
        elif call == "fallocate":
            a = re.match(r"(\d+), ([\w|]+), (\d+), (\d+)\)", rest)
            if not a or int(a.group(1)) != fd:
                continue
            kind = "discard" if "PUNCH_HOLE" in a.group(2) else "write"
            out[kind][0] += 1
            out[kind][1] += int(a.group(4))
        elif call == "io_submit":
            for cb in re.split(r"\{aio_data=", rest)[1:]:
                op = re.search(r"aio_lio_opcode=(\w+)", cb)
                fdm = re.search(r"aio_fildes=(\d+)", cb)
                if not op or not fdm or int(fdm.group(1)) != fd or op.group(1) not in IOCB:
                    continue
                kind = IOCB[op.group(1)]
                nb = re.search(r"aio_nbytes=(\d+)", cb)
                size = int(nb.group(1)) if nb else iov_bytes(cb)
                out[kind][0] += 1
                out[kind][1] += size if kind != "flush" else 0
    if fd is None:
        sys.exit("host_disk_ops: no read-write open of %s in %s" % (disk, path))
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
