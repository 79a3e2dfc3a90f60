/* Checkpoint save and load speed (docs/checkpoint-format.md) against plain
 * write()/read() of the same number of bytes, in the same run, on the same
 * file system:
 *   save: engine_save of GPT-2 (default the 124M preset) on one rank, fp32
 *         masters + Adam moments + state, fsynced, atomic rename, `latest`;
 *   plain write: one file of the same size with write() in 8 MiB blocks, fsync;
 *   load: engine_load (checks every Fletcher32 checksum) into the engine;
 *   plain read: read() of the plain file (dropping it from the page cache
 *         first where posix_fadvise allows, as the checkpoint's files are read
 *         right after being written too: both are read warm or both cold).
 * usage: bench_ckpt [--model gpt2] [--dir DIR] [--repeat N] [--device cpu|cuda]
 * (with --device cuda the engine's weights and optimizer state live on the GPU:
 * the save copies them to the host, the load back) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "dsrt.h"

const dsrt_api *dsrt_api_table(void);
static const dsrt_api *api;

static const char *err(void)
{
    static char buf[1024];
    dsrt_last_error_args le = {sizeof le, buf, sizeof buf, 0, 0};
    api->last_error(&le);
    return buf;
}

static long long dir_bytes(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "du -sb '%s' 2>/dev/null", dir);
    FILE *p = popen(cmd, "r");
    long long b = 0;
    if (p) {
        if (fscanf(p, "%lld", &b) != 1)
            b = 0;
        pclose(p);
    }
    return b;
}

static double plain_write(const char *path, size_t bytes, char *block, size_t bs)
{
    double t0 = bench_now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < bs ? bytes - done : bs;
        ssize_t w = write(fd, block, n);
        if (w <= 0) {
            perror("write");
            exit(1);
        }
        done += (size_t)w;
    }
    fsync(fd);
    close(fd);
    return bench_now() - t0;
}

static double plain_read(const char *path, char *block, size_t bs)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    double t0 = bench_now();
    while (read(fd, block, bs) > 0) {
    }
    close(fd);
    return bench_now() - t0;
}

int main(int argc, char **argv)
{
    const char *model = "gpt2", *dir = "/tmp", *device = "cpu";
    int repeat = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model"))
            model = argv[i + 1];
        else if (!strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--repeat"))
            repeat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--device"))
            device = argv[i + 1];
    }
    api = dsrt_api_table();
    static const char cfg_text[] =
        "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-4}}}";
    dsrt_config_create_args cc = {.struct_size = sizeof cc, .text = cfg_text,
                                  .text_length = sizeof cfg_text - 1, .world_size = 1};
    if (api->config_create(&cc)) {
        fprintf(stderr, "config: %s\n", err());
        return 1;
    }
    dsrt_engine_create_args ec = {.struct_size = sizeof ec, .config = cc.config, .model = model,
                                  .seq_len = 16, .seed = 1, .device = device};
    if (api->engine_create(&ec)) {
        fprintf(stderr, "engine: %s\n", err());
        return 1;
    }
    dsrt_engine_info_args in = {.struct_size = sizeof in, .engine = ec.engine};
    api->engine_info(&in);
    char root[512], ckdir[600], plain[600];
    snprintf(root, sizeof root, "%s/bench_ckpt_%d", dir, (int)getpid());
    snprintf(ckdir, sizeof ckdir, "%s/ckpt", root);
    snprintf(plain, sizeof plain, "%s/plain.bin", root);
    if (mkdir(root, 0777)) {
        perror(root);
        return 1;
    }
    size_t bs = 8u << 20;
    char *block = malloc(bs);
    memset(block, 0x5a, bs);
    printf("== checkpoint save/load: GPT-2 %s, %lld parameters, fp32 masters + Adam moments, one "
           "rank, %s, device %s\n",
           model, (long long)in.num_parameters, dir, in.device);
    double best_save = 1e30, best_load = 1e30, best_w = 1e30, best_r = 1e30;
    long long bytes = 0;
    for (int r = 0; r < repeat; r++) {
        double t0 = bench_now();
        dsrt_engine_save_args sa = {.struct_size = sizeof sa, .engine = ec.engine,
                                    .save_dir = ckdir, .tag = "bench"};
        if (api->engine_save(&sa)) {
            fprintf(stderr, "save: %s\n", err());
            return 1;
        }
        double ts = bench_now() - t0;
        bytes = dir_bytes(ckdir);
        double tw = plain_write(plain, (size_t)bytes, block, bs);
        t0 = bench_now();
        dsrt_engine_load_args la = {.struct_size = sizeof la, .engine = ec.engine,
                                    .load_dir = ckdir, .tag = "bench"};
        if (api->engine_load(&la)) {
            fprintf(stderr, "load: %s\n", err());
            return 1;
        }
        double tl = bench_now() - t0;
        double tr = plain_read(plain, block, bs);
        printf("run %d: checkpoint %.1f MB: save %.2f s (%.0f MB/s), plain write+fsync %.2f s "
               "(%.0f MB/s); load %.2f s (%.0f MB/s), plain read %.2f s (%.0f MB/s)\n",
               r + 1, bytes / 1e6, ts, bytes / 1e6 / ts, tw, bytes / 1e6 / tw, tl,
               bytes / 1e6 / tl, tr, bytes / 1e6 / tr);
        best_save = ts < best_save ? ts : best_save;
        best_load = tl < best_load ? tl : best_load;
        best_w = tw < best_w ? tw : best_w;
        best_r = tr < best_r ? tr : best_r;
    }
    printf("best of %d: save %.0f MB/s = %.2f x plain write; load %.0f MB/s = %.2f x plain read "
           "(the load also verifies every checksum and rebuilds the weights)\n",
           repeat, bytes / 1e6 / best_save, best_w / best_save, bytes / 1e6 / best_load,
           best_r / best_load);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd))
        fprintf(stderr, "could not remove %s\n", root);
    dsrt_engine_destroy_args ed = {sizeof ed, ec.engine};
    api->engine_destroy(&ed);
    dsrt_config_destroy_args cd = {sizeof cd, cc.config};
    api->config_destroy(&cd);
    free(block);
    return 0;
}
