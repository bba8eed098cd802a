/* Instruction-count bench: the model and an input raster are compiled in (model.c, bench_input.c
 * from bench/cortexm.py); the app runs every step from flash, writes its spikes to USART1 and exits
 * through semihosting. The TCG plugin (tools/insncount.c) counts instructions inside
 * snn_update_pop and snn_deliver_pop; the host divides by neuron updates and synaptic events.
 *
 * USART1 output, little-endian: per step, per LIF population: u16 n, n x u16 index; then "END!",
 * then the engine counters (5 x u32).
 */
#include <stdint.h>

#include "bench_input.h"
#include "model.h"
#include "snn.h"
#include "stm32f405.h"
#include "usart.h"

static uint32_t arena[(NEUROCC_MODEL_ARENA + 3u) / 4u + 1u];
static snn_t eng;

static void put16(uint32_t x) {
    uint8_t b[2] = {(uint8_t)x, (uint8_t)(x >> 8)};
    usart1_write(b, 2);
}
static void put32(uint32_t x) {
    put16(x & 0xFFFFu);
    put16(x >> 16);
}

static void semihost_exit(uint32_t code) {
    /* SYS_EXIT (0x18) with ADP_Stopped_ApplicationExit; QEMU: -semihosting-config enable=on */
    register uint32_t r0 __asm__("r0") = 0x18u;
    register uint32_t r1 __asm__("r1") = code ? 0x20024u : 0x20026u;
    __asm__ volatile("bkpt 0xAB" ::"r"(r0), "r"(r1) : "memory");
    for (;;) wfi();
}

int main(void) {
    uint32_t t, k, p;
    usart1_init();
    if (snn_open(&eng, neurocc_model, NEUROCC_MODEL_SIZE, SNN_BOARD_ANY, arena, sizeof arena) != SNN_OK) {
        usart1_write((const uint8_t *)"BAD!", 4);
        usart1_flush();
        semihost_exit(1);
    }
    for (t = 0; t < BENCH_STEPS; t++) {
        snn_clear_inputs(&eng);
        for (k = bench_input_ptr[t]; k < bench_input_ptr[t + 1]; k++) {
            uint32_t e = bench_input[k]; /* pop << 24 | count << 16 | neuron */
            snn_input(&eng, e >> 24, e & 0xFFFFu, (e >> 16) & 0xFFu);
        }
        snn_step(&eng);
        for (p = 0; p < eng.hdr->n_pops; p++) {
            uint32_t n, i;
            const uint16_t *s;
            if (eng.pops[p].kind != SNN_POP_LIF) continue;
            s = snn_spikes(&eng, p, &n);
            put16(n);
            for (i = 0; i < n; i++) put16(s[i]);
        }
    }
    usart1_write((const uint8_t *)"END!", 4);
    put32(eng.stats.steps);
    put32(eng.stats.synapse_ops);
    put32(eng.stats.neuron_updates);
    put32(eng.stats.spikes_in);
    put32(eng.stats.spikes_out);
    usart1_flush();
    semihost_exit(0);
    return 0;
}
