/* The neurocc model image, format version 3 (docs/device-protocol.md §4).
 *
 * Little-endian; every table starts 4-byte aligned; the image itself must be 4-byte aligned in
 * memory. backends/cortexm/image.py writes exactly these layouts (and its tests pin the sizes).
 * The header carries the integer model's widths (the target's NumericFormat): the engine has no width
 * literals, and refuses widths its int32/int64 arithmetic cannot compute exactly (SNN_E_WIDTHS; the
 * SNN_IMG_* bounds below, which image.py checks first).
 *
 * Version 3 (76-byte header) adds convolution groups (a kernel stored once, scattered per input
 * spike), the update order and pulled groups (delay-0 arrivals summed into one shared scratch right
 * before their population updates, instead of a ring per population), spike bitmaps, and u only for
 * populations whose current keeps state. A version 2 image (68-byte header) is refused: SNN_E_VERSION.
 */
#ifndef NEUROCC_SNN_IMAGE_H
#define NEUROCC_SNN_IMAGE_H

#include <stdint.h>

#define SNN_IMG_MAGIC 0x4D43434Eu /* "NCCM" */
#define SNN_IMG_VERSION 3u
#define SNN_CRC_START 16u /* the CRC covers bytes [16, image_size) */

/* Widths the engine computes exactly (inclusive bounds; backends/cortexm/image.py WIDTH_BOUNDS):
 *   decay_bits 1..16        du, dv are uint16 in the population table, so at most 2^16 - 1; the
 *                           decay product |x| * (2^decay_bits - D) < 2^31 * 2^16 fits uint64, and
 *                           the quotient (<= |x|) fits 32 bits
 *   state_bits 2..29        |decay(v) + bias| < 2^29 keeps the v sum in int32 (snn_update_pop)
 *   activation_shift 0..31  a_in << shift is a uint32 shift: mod 2^32, the reference's wrap to 32 bits
 *   threshold_shift 0..30   vth << shift is stored as a non-negative int32: any vth >= 1 needs <= 30 */
#define SNN_IMG_DECAY_BITS_MIN 1u
#define SNN_IMG_DECAY_BITS_MAX 16u
#define SNN_IMG_STATE_BITS_MIN 2u
#define SNN_IMG_STATE_BITS_MAX 29u
#define SNN_IMG_ACTIVATION_SHIFT_MAX 31u
#define SNN_IMG_THRESHOLD_SHIFT_MAX 30u

/* Board ids: an image runs only on the board it was built for (0 = portable, e.g. the host). */
#define SNN_BOARD_ANY 0u
#define SNN_BOARD_NETDUINOPLUS2 0x0413u /* STM32F405 (its AN3155 device id) */
#define SNN_BOARD_NRF52840 0x52840u
#define SNN_BOARD_STM32H743 0x0450u

enum snn_pop_kind { SNN_POP_INPUT = 0, SNN_POP_LIF = 1 };
enum snn_pop_flags {
    SNN_POPF_OUTPUT = 1,
    SNN_POPF_BIAS = 2,
    SNN_POPF_U = 4, /* u keeps state (du + 1 < 2^decay_bits); else decay(u) is 0 and u is not stored */
    SNN_POPF_HWC = 8, /* its one ring is pulled, from convs only, summed channel-last: neuron (c, p) of the
                       * (C, H*W) population at scratch[p * C + c] (C = the convs' c_out) */
};

/* Weight storage of a group. Mixed-sign Loihi mantissas are even: stored halved as int8 with the
 * ring's shift raised by one, which is exact (see backends/cortexm/image.py). */
enum snn_wkind {
    SNN_W_U8 = 0,  /* uint8, added */
    SNN_W_N8 = 1,  /* uint8 magnitude, subtracted (inhibitory) */
    SNN_W_S8 = 2,  /* int8 */
    SNN_W_S16 = 3, /* int16 */
};

enum snn_group_flags {
    SNN_G_IDX16 = 1,    /* post indices are uint16 (else uint8) */
    SNN_G_SEGMENTED = 2, /* rows are segments {delay, block, count} (delays, or idx8 with n_post > 256) */
    SNN_G_DENSE = 8,    /* no indices: row j is w[j * n_post .. (j+1) * n_post) */
    SNN_G_DELAYS = 16,  /* a delay (uint8) per synapse at seg_off; u8/s8 weights only */
    SNN_G_CONV = 32,    /* a convolution: row_off -> snn_img_conv_t, w_off -> its kernel; delay 0 */
};

typedef struct {
    uint32_t magic;
    uint16_t version;
    uint16_t header_size; /* sizeof(snn_img_header_t) */
    uint32_t image_size;
    uint32_t crc32;       /* zlib.crc32 of bytes [16, image_size) */
    uint32_t board_id;
    uint16_t n_pops;
    uint16_t n_rings;
    uint16_t n_groups;
    uint8_t state_bits;   /* u, v wrap/clip width (24 on Loihi) */
    uint8_t flags;
    uint32_t n_state;     /* LIF neurons (v entries) */
    uint32_t arena_bytes; /* what snn_validate computes; the packer states it for budget checks */
    uint32_t pops_off;
    uint32_t rings_off;
    uint32_t groups_off;
    uint32_t scratch_words; /* the shared arrival scratch: largest pulled population, >= half the largest LIF */
    uint32_t n_neurons;   /* all populations, inputs included */
    uint32_t ring_words;  /* sum over pushed rings of slots * n_post */
    uint32_t model_id;    /* first 4 bytes of sha256(the 4 width bytes, then bytes [76, image_size)), for INFO */
    uint8_t decay_bits;       /* decay(x, D) = x * (2^decay_bits - D) >> decay_bits, toward zero (12 on Loihi) */
    uint8_t activation_shift; /* a_in << activation_shift enters u (6 on Loihi) */
    uint8_t threshold_shift;  /* a neuron fires when v > vth << threshold_shift (6 on Loihi) */
    uint8_t reserved;         /* 0 */
    /* format version 3 */
    uint32_t n_u;         /* u entries: neurons of the populations with SNN_POPF_U */
    uint32_t order_off;   /* uint16[LIF populations]: the order snn_step updates them in */
} snn_img_header_t;       /* 76 bytes */

typedef struct {
    uint8_t kind;         /* snn_pop_kind */
    uint8_t flags;        /* snn_pop_flags */
    uint16_t n;           /* neurons, >= 1 */
    uint16_t du;          /* current decay D: u *= (2^decay_bits - (du + 1)) / 2^decay_bits; < 2^decay_bits */
    uint16_t dv;          /* voltage decay: v *= (2^decay_bits - dv) / 2^decay_bits; < 2^decay_bits */
    int32_t vth_shifted;  /* vth << threshold_shift (>= 0; its low threshold_shift bits are 0) */
    uint32_t bias_off;    /* int32[n] effective bias (mant << exp), or 0 if all zero */
    uint32_t v_base;      /* first index into v (LIF populations in image order) */
    uint32_t u_base;      /* first index into u (SNN_POPF_U populations in image order) */
    uint16_t first_ring, n_rings;   /* rings into this population (contiguous; a pulled one first) */
    uint16_t first_group, n_groups; /* pushed groups out of this population (contiguous) */
} snn_img_pop_t;          /* 32 bytes */

/* A ring is where one population's arrivals of one weight shift are summed, unshifted. slots >= 1: a
 * pushed ring in the arena (slot t+1+d gets the spikes sent at t with delay d). slots == 0: the
 * pulled "ring", no memory of its own: groups [first_group, first_group + n_groups) are delivered into
 * the shared scratch just before the population updates, from the spikes their pre populations sent
 * in the previous step (an input, the population itself, or one updated later in the order). */
typedef struct {
    uint16_t post;        /* population */
    uint8_t slots;        /* ring length: largest delay + 1; 0 = pulled */
    int8_t shift;         /* arriving raw sums: << shift, or floor >> -shift */
    uint16_t first_group, n_groups; /* pulled: the groups into it (contiguous); pushed: 0, 0 */
} snn_img_ring_t;         /* 8 bytes */

/* Groups: first the pushed ones, contiguous per pre population, then the pulled ones, contiguous per
 * post population. */
typedef struct {
    uint16_t pre;         /* population */
    uint16_t ring;
    uint8_t wkind;        /* snn_wkind */
    uint8_t flags;        /* snn_group_flags */
    uint8_t delay;        /* the delay of an unsegmented group */
    uint8_t reserved;
    uint32_t n_syn;       /* entries of idx/w (dense: n_pre * n_post; conv: kernel weights) */
    uint32_t row_off;     /* n_pre + 1 uint32 row pointers (synapse units); 0 for dense; conv: its record */
    uint32_t idx_off;     /* post indices, u8 or u16; 0 for dense and conv */
    uint32_t w_off;       /* weights; conv: the kernel, [c_in][kh][kw in column order][c_out / groups] */
    uint32_t segptr_off;  /* segmented: n_pre + 1 pointers into seg (uint32) */
    uint32_t seg_off;     /* segmented: snn_img_seg_t[]; SNN_G_DELAYS: uint8 delay per synapse */
} snn_img_group_t;        /* 32 bytes */

typedef struct {
    uint8_t delay;
    uint8_t block;        /* idx8: post = block * 256 + idx */
    uint16_t count;       /* synapses in this segment */
} snn_img_seg_t;          /* 4 bytes */

/* A convolution (compiler/ir/conv.py Conv): an optional sum pool on the input, then the conv, C-order
 * (C, H, W) neurons on both sides. out[co, yo, xo] += K[co, ci, i, j] for every input spike at (ci, y, x)
 * whose pooled position (Y, X) satisfies Y + py - i * dy = yo * sy (and the same for x).
 *
 * The kernel is stored [c_in][kh][kw in column order][c_out / groups]: the weights of tap (i, j) for input
 * channel ci start at ((ci * kh + i) * kw + col(j)) * opg, where col() groups the kernel columns by
 * j mod sx, each group in descending j (sx = 1: kw - 1 - j). The taps j, j + sx that one input column
 * reaches (output columns xo, xo - 1) then have adjacent weights. The axis tables spell the geometry
 * out per input row and column. At rows_off: uint16 ptr[h_in + 1] (4-byte padded), then uint16 pairs
 * {w, b} = {i * kw * opg, yo * w_out * m} for the taps of input row y at [ptr[y], ptr[y + 1]), ordered
 * by pooled row, then i. At cols_off: uint16 ptr[w_in + 1] (padded), then uint16 triples {w, b, n}: runs
 * of n cells. m and the runs depend on `layout`:
 *   0 (channel-first, the population's own order): one run per tap, {col(j) * opg, xo, opg}, its cells
 *     h_out * w_out apart; m = 1;
 *   1 (channel-last, into a SNN_POPF_HWC population): the taps of one column in order, consecutive ones
 *     merged (if groups == 1) while j rises by sx and xo falls by 1 (their weights and their cells are
 *     then adjacent, lowest first): {col(j_last) * opg, xo_last * c_out, taps * opg}, cells contiguous;
 *     m = c_out. Each spike's base is its group's first channel: g * opg (* h_out * w_out for layout 0).
 * snn_validate recomputes both tables from the geometry and refuses an image whose tables differ. */
typedef struct {
    uint16_t c_in, h_in, w_in;    /* input: the pre population's shape */
    uint16_t c_out, h_out, w_out; /* output: the post population's shape */
    uint16_t groups;              /* c_in and c_out are multiples; opg = c_out / groups */
    uint8_t kh, kw;               /* kernel */
    uint8_t sy, sx, py, px, dy, dx;       /* stride, leading padding, dilation */
    uint8_t pkh, pkw, psy, psx, ppy, ppx; /* sum pool window, stride, leading padding (1 1 1 1 0 0: none) */
    uint16_t hp, wp;              /* the pooled map the kernel reads */
    uint8_t layout;               /* 0 channel-first, 1 channel-last (see above) */
    uint8_t reserved[3];          /* 0 */
    uint32_t rows_off, cols_off;  /* axis tables */
} snn_img_conv_t;                 /* 44 bytes */

#endif
