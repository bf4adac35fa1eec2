/* bpf_attach_all OBJ: load a BPF object, attach every program in it, and
 * hold them until SIGINT/SIGTERM. For benchmarks that need a reference set
 * of programs (bench/probe_overhead.sh: the empty-program floor). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/libbpf.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj = NULL;
	struct bpf_program *prog;
	int n = 0, rc = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OBJ.bpf.o\n", argv[0]);
		return 2;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "bpf_attach_all: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "bpf_attach_all: load %s: %s\n", argv[1], strerror(errno));
		goto out;
	}
	bpf_object__for_each_program(prog, obj) {
		/* the links live as long as the process: it exits to detach */
		if (!bpf_program__attach(prog)) {
			fprintf(stderr, "bpf_attach_all: attach %s: %s\n", bpf_program__name(prog),
				strerror(errno));
			goto out;
		}
		n++;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("attached %d programs\n", n);
	fflush(stdout);
	while (!stop)
		pause();
	rc = 0;
out:
	bpf_object__close(obj);
	return rc;
}
