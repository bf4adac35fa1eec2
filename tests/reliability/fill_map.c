/* Fills a BPF hash map of a running kvmscope process with synthetic entries
 * until the kernel refuses more (E2BIG), so that a test can watch the
 * collector's drop counter rise on real events afterwards.
 *
 *   fill_map PID MAP_NAME
 *
 * The map is found through PID's file descriptors (/proc/PID/fdinfo
 * map_id), so maps of other processes with the same name are left alone.
 * Keys start with a __u32 TAI second (the layout of every aggregation key in
 * bpf/): it is set far in the future so that the drain, which takes only
 * finished seconds, never frees the slots. Prints the number of entries
 * added. Build: cc -O2 -o fill_map fill_map.c -lbpf
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static int find_map(int pid, const char *name)
{
	char path[64], line[256];
	struct dirent *de;
	DIR *d;
	int found = -1;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo", pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while (found < 0 && (de = readdir(d))) {
		char fi[400];
		FILE *f;

		snprintf(fi, sizeof(fi), "%s/%s", path, de->d_name);
		f = fopen(fi, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			unsigned int id;
			struct bpf_map_info info = { 0 };
			__u32 len = sizeof(info);
			int fd;

			if (sscanf(line, "map_id: %u", &id) != 1)
				continue;
			fd = bpf_map_get_fd_by_id(id);
			if (fd < 0)
				break;
			if (!bpf_obj_get_info_by_fd(fd, &info, &len) && !strcmp(info.name, name))
				found = fd;
			else
				close(fd);
			break;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

int main(int argc, char **argv)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	unsigned char *key, *val;
	long added = 0;
	int fd, ncpu;

	if (argc != 3) {
		fprintf(stderr, "usage: fill_map PID MAP_NAME\n");
		return 2;
	}
	fd = find_map(atoi(argv[1]), argv[2]);
	if (fd < 0) {
		fprintf(stderr, "fill_map: no map '%s' held by pid %s\n", argv[2], argv[1]);
		return 1;
	}
	if (bpf_obj_get_info_by_fd(fd, &info, &len) || info.key_size < 8) {
		fprintf(stderr, "fill_map: map '%s': unexpected key size\n", argv[2]);
		return 1;
	}
	ncpu = libbpf_num_possible_cpus();
	key = calloc(1, info.key_size);
	val = calloc((size_t)ncpu, (info.value_size + 7) / 8 * 8);
	if (!key || !val || ncpu <= 0)
		return 1;
	for (__u32 i = 1; i <= info.max_entries; i++) {
		__u32 sec = 0xfffffff0u;

		memcpy(key, &sec, 4);
		memcpy(key + 4, &i, 4);
		if (bpf_map_update_elem(fd, key, val, BPF_NOEXIST)) {
			if (errno == E2BIG)
				break;
			if (errno == EEXIST)
				continue;
			fprintf(stderr, "fill_map: update: %s\n", strerror(errno));
			return 1;
		}
		added++;
	}
	printf("%ld\n", added);
	return 0;
}
