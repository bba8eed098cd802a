/* neurocc SNN engine: the integer CUBA-LIF of runtime/simulator.py simulate_int, in portable C99.
 *
 * No malloc, no floats. The model is a read-only image (format in docs/device-protocol.md §4 and
 * snn_image.h); all mutable state lives in one caller-provided arena whose size the image states.
 * One step: every LIF population reads its arrival slot and updates; then the spikes of every
 * population (inputs with integer counts, LIFs binary) are delivered to slot t+1+d of their rings.
 */
#ifndef NEUROCC_SNN_H
#define NEUROCC_SNN_H

#include <stdint.h>

#include "snn_image.h"

#ifdef __cplusplus
extern "C" {
#endif

enum snn_status {
    SNN_OK = 0,
    SNN_E_MAGIC = 1,      /* not a neurocc model image */
    SNN_E_VERSION = 2,    /* image format version this engine does not read */
    SNN_E_SIZE = 3,       /* truncated image, or a table runs past its end */
    SNN_E_CRC = 4,        /* CRC32 mismatch */
    SNN_E_BOARD = 5,      /* image built for another board */
    SNN_E_FORMAT = 6,     /* inconsistent tables (bad kind, index out of range, ...) */
    SNN_E_ARENA = 7,      /* the arena is smaller than the image needs */
    SNN_E_INPUT = 8,      /* input spike for a non-input population or out of range */
    SNN_E_WIDTHS = 9,     /* header widths (decay_bits, state_bits, shifts) this engine cannot compute exactly */
};

/* Counters since the last snn_reset (STATS). */
typedef struct {
    uint32_t steps;
    uint32_t synapse_ops;    /* synapse cells processed (dense rows count every cell) */
    uint32_t neuron_updates;
    uint32_t spikes_in;      /* input spikes, counts summed */
    uint32_t spikes_out;     /* LIF spikes */
} snn_counters_t;

typedef struct {
    const uint8_t *img;
    const snn_img_header_t *hdr;
    const snn_img_pop_t *pops;
    const snn_img_ring_t *rings;
    const snn_img_group_t *groups;
    /* arena views */
    int32_t *u;
    int32_t *v;
    uint32_t *ring_mem;      /* raw synaptic sums, per ring: slots x n_post */
    uint32_t *ring_base;     /* per ring: word offset of its memory in ring_mem */
    int32_t *a_in;           /* scratch: one population's input current for this step */
    uint32_t *spike_off;     /* per population: offset into spike_idx */
    uint32_t *spike_n;       /* per population: spikes this step */
    uint16_t *spike_idx;     /* per population: spiking neuron indices, ascending for LIFs */
    uint8_t *spike_cnt;      /* parallel to spike_idx: input counts (1 for LIFs) */
    uint32_t t;
    uint32_t graded;         /* an input this step has a count > 1 */
    snn_counters_t stats;
} snn_t;

/* CRC-32 (IEEE 802.3, reflected, as zlib.crc32); `crc` is the running value (0 to start). */
uint32_t snn_crc32(uint32_t crc, const uint8_t *data, uint32_t len);

/* Check an image completely (magic, version, CRC, board, every table and index bound) without
 * touching any engine state: LOAD_COMMIT runs it before the new image replaces the old one.
 * board_id 0 accepts any board. On success *arena_need receives the arena bytes it needs. */
int snn_validate(const uint8_t *img, uint32_t size, uint32_t board_id, uint32_t *arena_need);

/* Bind a validated image to an arena (8-byte aligned) and reset the state. */
int snn_open(snn_t *e, const uint8_t *img, uint32_t size, uint32_t board_id, void *arena, uint32_t arena_size);

/* Zero u, v, rings and spikes; t = 0; counters cleared. */
void snn_reset(snn_t *e);

/* Inputs of the coming step: clear, then add (population, neuron, count). Indices of one population
 * must be added in strictly ascending order (the wire format guarantees it). */
void snn_clear_inputs(snn_t *e);
int snn_input(snn_t *e, uint32_t pop, uint32_t neuron, uint32_t count);

/* Advance one step. */
void snn_step(snn_t *e);

/* This step's spikes of population `pop`: indices ascending. */
const uint16_t *snn_spikes(const snn_t *e, uint32_t pop, uint32_t *n);

/* Hot paths, exported (not static) so that the instruction-count bench can find their address
 * ranges with nm: neuron update of one population, and delivery of one population's spikes. */
void snn_update_pop(snn_t *e, uint32_t pop);
void snn_deliver_pop(snn_t *e, uint32_t pop);

#ifdef __cplusplus
}
#endif
#endif
