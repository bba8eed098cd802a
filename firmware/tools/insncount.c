/* QEMU TCG plugin: count guest instructions executed inside named address ranges.
 *
 *   -plugin libinsncount.so,out=counts.txt,range0=NAME:LO:HI[,range1=...]
 *
 * (distinct keys: QEMU's option parser keeps one value per key)
 *
 * At exit writes "total N" and "NAME N" per range to `out`. Deterministic: an instruction is
 * counted each time it executes (inline add on every translated instruction in a range). The plugin
 * API (v1, QEMU 7.2) is declared here, so no QEMU headers are needed. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op, void *ptr,
                                                uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_RANGES 16
static struct {
    char name[64];
    uint64_t lo, hi, count;
} ranges[MAX_RANGES];
static int n_ranges;
static uint64_t total;
static char out_path[512] = "insncount.txt";

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    int r;
    (void)id;
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &total, 1);
        for (r = 0; r < n_ranges; r++)
            if (pc >= ranges[r].lo && pc < ranges[r].hi)
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &ranges[r].count, 1);
    }
}

static void at_exit_cb(qemu_plugin_id_t id, void *p) {
    FILE *f = fopen(out_path, "w");
    int r;
    (void)id;
    (void)p;
    if (!f) return;
    fprintf(f, "total %" PRIu64 "\n", total);
    for (r = 0; r < n_ranges; r++) fprintf(f, "%s %" PRIu64 "\n", ranges[r].name, ranges[r].count);
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                                int argc, char **argv) {
    int i;
    (void)info;
    for (i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        } else if (strncmp(argv[i], "range", 5) == 0 && strchr(argv[i], '=') && n_ranges < MAX_RANGES) {
            char *spec = strchr(argv[i], '=') + 1, *c1 = strchr(spec, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c2) return -1;
            snprintf(ranges[n_ranges].name, sizeof ranges[n_ranges].name, "%.*s", (int)(c1 - spec), spec);
            ranges[n_ranges].lo = strtoull(c1 + 1, NULL, 0);
            ranges[n_ranges].hi = strtoull(c2 + 1, NULL, 0);
            n_ranges++;
        } else {
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, at_exit_cb, NULL);
    return 0;
}
