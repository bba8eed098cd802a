/* neurocc SNN engine: the integer CUBA-LIF of runtime/simulator.py simulate_int, in portable C99.
 *
 * No malloc, no floats. The model is a read-only image (format in docs/device-protocol.md §4 and
 * snn_image.h); all mutable state lives in one caller-provided arena whose size the image states.
 * One step: the LIF populations in the image's update order each pull their delay-0 arrivals from
 * the spikes their pre populations sent last step into one shared scratch, add their pushed ring
 * slots, and update; then the spikes of every population (inputs with integer counts, LIFs binary)
 * are pushed to slot t+1+d of the remaining rings. Convolutions scatter their kernel per spike.
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
    SNN_E_INPUT = 8,      /* input spike for a non-input population, out of range, or twice in a step */
    SNN_E_WIDTHS = 9,     /* header widths (decay_bits, state_bits, shifts) this engine cannot compute exactly */
};

/* Counters since the last snn_reset (STATS). */
typedef struct {
    uint32_t steps;
    uint32_t synapse_ops;    /* synapse cells processed (dense rows and conv kernels count every cell) */
    uint32_t neuron_updates;
    uint32_t spikes_in;      /* input spikes, counts summed */
    uint32_t spikes_out;     /* LIF spikes */
} snn_counters_t;

/* One step's input spikes: a bit per input neuron, its count (1..255), and whether any count is > 1. */
typedef struct {
    uint32_t *bits;
    uint8_t *cnt;
    uint32_t graded;
} snn_inputs_t;

typedef struct {
    const uint8_t *img;
    const snn_img_header_t *hdr;
    const snn_img_pop_t *pops;
    const snn_img_ring_t *rings;
    const snn_img_group_t *groups;
    const uint16_t *order;   /* LIF populations in update order */
    /* arena views */
    int32_t *u;
    int32_t *v;
    uint32_t *ring_mem;      /* raw synaptic sums, per pushed ring: slots x n_post */
    uint32_t *ring_base;     /* per ring: word offset of its memory in ring_mem */
    uint32_t *scratch;       /* pulled arrivals of the population updating; between steps, snn_spikes lists */
    uint32_t *spike_n;       /* per population: spikes this step (inputs: neurons with a count) */
    uint32_t *bit_off;       /* per population: word offset into bits (LIF) or into an input bitmap */
    uint32_t *cnt_off;       /* per input population: byte offset into an input count array */
    uint32_t *bits;          /* LIF spikes of the last step, one bit per neuron */
    snn_inputs_t in_now;     /* inputs of the coming step (snn_input) */
    snn_inputs_t in_prev;    /* inputs of the step just run (what pulled groups read) */
    uint32_t *scratch_dirty; /* (one arena word) scratch words snn_spikes wrote since the last step */
    uint32_t n_lif;          /* LIF populations (entries of order) */
    uint32_t in_bytes;       /* bytes of one input count array (per input population, 4-byte padded) */
    uint32_t in_words;       /* words of one input bitmap */
    uint32_t t;
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

/* Inputs of the coming step: clear, then add (population, neuron, count 1..255), each neuron at most
 * once per step. */
void snn_clear_inputs(snn_t *e);
int snn_input(snn_t *e, uint32_t pop, uint32_t neuron, uint32_t count);

/* Advance one step. */
void snn_step(snn_t *e);

/* The last step's spikes of population `pop`, indices ascending. The list is decoded into the arena's
 * scratch: valid until the next snn_spikes or snn_step call. */
const uint16_t *snn_spikes(const snn_t *e, uint32_t pop, uint32_t *n);

/* Hot paths, exported (not static): neuron update of one population (section .text.snn_update), the
 * pulled arrivals into one population and the pushed delivery of one population's spikes (section
 * .text.snn_deliver); the instruction-count bench counts inside those sections. */
void snn_update_pop(snn_t *e, uint32_t pop);
void snn_pull_pop(snn_t *e, uint32_t pop);
void snn_deliver_pop(snn_t *e, uint32_t pop);

#ifdef __cplusplus
}
#endif
#endif
