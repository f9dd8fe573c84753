// replay.c - runs a libFuzzer harness over files, without libFuzzer: make test builds every
// harness with gcc (and make asan / tsan with their sanitizers) and replays the committed
// corpus and every past finding (tests/fuzz/regressions/<harness>/), so that a fixed finding
// stays fixed and the harnesses' oracles keep running on every build.
//
//   build/fuzz-replay/fuzz_api tests/fuzz/corpus/fuzz_api tests/fuzz/regressions/fuzz_api
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz_util.h"

// Harnesses without an initializer get this one (a weak default).
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

// Reads a whole file into a malloc'd buffer (NULL when unreadable).
static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            unsigned char *grown = realloc(buf, cap ? cap * 2 : 4096);
            if (!grown)
                break;
            buf = grown;
            cap = cap ? cap * 2 : 4096;
        }
        size_t got = fread(buf + *len, 1, cap - *len, f);
        *len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    return buf;
}

static int replay_file(const char *path) {
    size_t len = 0;
    unsigned char *data = read_file(path, &len);
    if (!data) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 1;
}

// A file, or every regular file of a folder (not recursive); returns the inputs run or -1.
static int replay_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        return 0; // a harness without regressions has no folder
    if (!S_ISDIR(st.st_mode))
        return replay_file(path);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while (n >= 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        int got = replay_file(file);
        n = got < 0 ? -1 : n + got;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int n = replay_path(argv[i]);
        if (n < 0)
            return 1;
        total += n;
    }
    const char *name = strrchr(argv[0], '/');
    printf("%s: %d inputs replayed, no oracle violated\n", name ? name + 1 : argv[0], total);
    return 0;
}
