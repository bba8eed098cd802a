/* Host harness for the engine: run a model image on an input raster, write every LIF spike.
 *
 *   snn_run model.bin input.bin output.bin
 *
 * input.bin:  "NCRI", u32 T, u32 N (input neurons of all input populations in image order), T*N u8 counts
 * output.bin: "NCRO", u32 T, u32 M (LIF neurons of all LIF populations in image order),     T*M u8 0/1
 * stdout: one JSON line of engine counters. Exit status 0, or 2 with a message on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snn.h"

static uint8_t *slurp(const char *path, uint32_t *len) {
    FILE *f = fopen(path, "rb");
    long n;
    uint8_t *buf;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 4); /* malloc is 8/16-aligned: the image needs 4 */
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (uint32_t)n;
    return buf;
}

/* snn_status names, as runtime/serial/framing.py SNN_STATUS tells them to the user */
static const char *status_name(int rc) {
    static const char *const names[] = {"ok", "bad magic", "unsupported format version (this engine reads version 3: compile again)",
                                        "truncated", "CRC mismatch", "built for another board",
                                        "inconsistent tables", "arena too small", "bad input",
                                        "numeric widths the engine cannot compute exactly"};
    return rc >= 0 && rc < (int)(sizeof names / sizeof names[0]) ? names[rc] : "unknown";
}

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static void wr32(FILE *f, uint32_t x) {
    uint8_t b[4] = {(uint8_t)x, (uint8_t)(x >> 8), (uint8_t)(x >> 16), (uint8_t)(x >> 24)};
    fwrite(b, 1, 4, f);
}

int main(int argc, char **argv) {
    uint32_t img_len, in_len, need = 0, T, N, M = 0, N_img = 0, p, t, i;
    uint8_t *img, *in, *row;
    void *arena;
    snn_t e;
    FILE *out;
    int rc;
    if (argc != 4) {
        fprintf(stderr, "usage: snn_run model.bin input.bin output.bin\n");
        return 2;
    }
    img = slurp(argv[1], &img_len);
    in = slurp(argv[2], &in_len);
    if (!img || !in) {
        fprintf(stderr, "snn_run: cannot read %s\n", img ? argv[2] : argv[1]);
        return 2;
    }
    rc = snn_validate(img, img_len, SNN_BOARD_ANY, &need);
    if (rc != SNN_OK) {
        fprintf(stderr, "snn_run: invalid model image (error %d: %s)\n", rc, status_name(rc));
        return 2;
    }
    arena = malloc(need ? need : 4);
    rc = snn_open(&e, img, img_len, SNN_BOARD_ANY, arena, need);
    if (rc != SNN_OK) {
        fprintf(stderr, "snn_run: cannot open model (error %d: %s)\n", rc, status_name(rc));
        return 2;
    }
    if (in_len < 12 || memcmp(in, "NCRI", 4) != 0) {
        fprintf(stderr, "snn_run: %s is not an input raster\n", argv[2]);
        return 2;
    }
    T = rd32(in + 4);
    N = rd32(in + 8);
    for (p = 0; p < e.hdr->n_pops; p++) {
        if (e.pops[p].kind == SNN_POP_INPUT) N_img += e.pops[p].n;
        else M += e.pops[p].n;
    }
    if (N != N_img || (uint64_t)in_len < 12u + (uint64_t)T * N) {
        fprintf(stderr, "snn_run: raster has %u inputs x %u steps, the model takes %u inputs\n", N, T, N_img);
        return 2;
    }
    out = fopen(argv[3], "wb");
    if (!out) {
        fprintf(stderr, "snn_run: cannot write %s\n", argv[3]);
        return 2;
    }
    fwrite("NCRO", 1, 4, out);
    wr32(out, T);
    wr32(out, M);
    row = calloc(M ? M : 1, 1);
    for (t = 0; t < T; t++) {
        const uint8_t *x = in + 12 + (size_t)t * N;
        uint32_t col = 0, o = 0;
        snn_clear_inputs(&e);
        for (p = 0; p < e.hdr->n_pops; p++) {
            if (e.pops[p].kind != SNN_POP_INPUT) continue;
            for (i = 0; i < e.pops[p].n; i++, col++)
                if (x[col] && snn_input(&e, p, i, x[col]) != SNN_OK) {
                    fprintf(stderr, "snn_run: bad input at step %u\n", t);
                    return 2;
                }
        }
        snn_step(&e);
        memset(row, 0, M);
        for (p = 0; p < e.hdr->n_pops; p++) {
            uint32_t n;
            const uint16_t *s;
            if (e.pops[p].kind != SNN_POP_LIF) continue;
            s = snn_spikes(&e, p, &n);
            for (i = 0; i < n; i++) row[o + s[i]] = 1;
            o += e.pops[p].n;
        }
        fwrite(row, 1, M, out);
    }
    fclose(out);
    printf("{\"steps\": %u, \"synapse_ops\": %u, \"neuron_updates\": %u, \"spikes_in\": %u, \"spikes_out\": %u, "
           "\"arena_bytes\": %u}\n",
           e.stats.steps, e.stats.synapse_ops, e.stats.neuron_updates, e.stats.spikes_in, e.stats.spikes_out, need);
    return 0;
}
