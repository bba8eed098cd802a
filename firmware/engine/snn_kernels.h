/* The synaptic delivery kernels of the neurocc engine: rows (dense, simple, segmented, delays) and
 * convolutions. Included once, by snn.c, after its helpers (the firmware Makefile builds one engine
 * source): every function here is static and lives in section .text.snn_deliver. */
#ifndef NEUROCC_SNN_KERNELS_H
#define NEUROCC_SNN_KERNELS_H

/* ---- synaptic delivery ----
 * One kernel per (index width, weight kind): 8 synapses per iteration (load index, load weight, load,
 * add, store: 5 instructions each on the M4), the remainder through a fall-through switch. The row
 * loops are separate functions per encoding so each keeps its pointers in registers; all of them
 * live in section .text.snn_deliver, whose bounds the instruction-count bench measures. */

#define B8(OP, k) b[ix[k]] OP (uint32_t)(int32_t)w[k]
#define KERNEL(NAME, IT, WT, OP)                                                                           \
    SNN_INLINE void NAME(uint32_t *restrict b, const IT *restrict ix, const WT *restrict w, uint32_t n) {   \
        const IT *end = ix + (n & ~7u);                                                                    \
        while (ix != end) {                                                                                \
            B8(OP, 0); B8(OP, 1); B8(OP, 2); B8(OP, 3); B8(OP, 4); B8(OP, 5); B8(OP, 6); B8(OP, 7);        \
            ix += 8;                                                                                       \
            w += 8;                                                                                        \
        }                                                                                                  \
        switch (n & 7u) {                                                                                  \
        case 7: B8(OP, 6); SNN_FALLTHROUGH;                                                                \
        case 6: B8(OP, 5); SNN_FALLTHROUGH;                                                                \
        case 5: B8(OP, 4); SNN_FALLTHROUGH;                                                                \
        case 4: B8(OP, 3); SNN_FALLTHROUGH;                                                                \
        case 3: B8(OP, 2); SNN_FALLTHROUGH;                                                                \
        case 2: B8(OP, 1); SNN_FALLTHROUGH;                                                                \
        case 1: B8(OP, 0); SNN_FALLTHROUGH;                                                                \
        default: break;                                                                                    \
        }                                                                                                  \
    }

#define D8(OP, k) b[k] OP (uint32_t)(int32_t)w[k]
#define DENSE_KERNEL(NAME, WT, OP)                                                                         \
    SNN_INLINE void NAME(uint32_t *restrict b, const WT *restrict w, uint32_t n) {                          \
        const WT *end = w + (n & ~7u);                                                                     \
        while (w != end) {                                                                                 \
            D8(OP, 0); D8(OP, 1); D8(OP, 2); D8(OP, 3); D8(OP, 4); D8(OP, 5); D8(OP, 6); D8(OP, 7);        \
            b += 8;                                                                                        \
            w += 8;                                                                                        \
        }                                                                                                  \
        switch (n & 7u) {                                                                                  \
        case 7: D8(OP, 6); SNN_FALLTHROUGH;                                                                \
        case 6: D8(OP, 5); SNN_FALLTHROUGH;                                                                \
        case 5: D8(OP, 4); SNN_FALLTHROUGH;                                                                \
        case 4: D8(OP, 3); SNN_FALLTHROUGH;                                                                \
        case 3: D8(OP, 2); SNN_FALLTHROUGH;                                                                \
        case 2: D8(OP, 1); SNN_FALLTHROUGH;                                                                \
        case 1: D8(OP, 0); SNN_FALLTHROUGH;                                                                \
        default: break;                                                                                    \
        }                                                                                                  \
    }

KERNEL(k_i8_u8, uint8_t, uint8_t, +=)
KERNEL(k_i8_n8, uint8_t, uint8_t, -=)
KERNEL(k_i8_s8, uint8_t, int8_t, +=)
KERNEL(k_i8_s16, uint8_t, int16_t, +=)
KERNEL(k_i16_u8, uint16_t, uint8_t, +=)
KERNEL(k_i16_n8, uint16_t, uint8_t, -=)
KERNEL(k_i16_s8, uint16_t, int8_t, +=)
KERNEL(k_i16_s16, uint16_t, int16_t, +=)
DENSE_KERNEL(d_u8, uint8_t, +=)
DENSE_KERNEL(d_n8, uint8_t, -=)
DENSE_KERNEL(d_s16, int16_t, +=)

#if defined(__GNUC__) && defined(__thumb2__) && defined(__ARM_FEATURE_DSP)
/* int8 weights into 32-bit sums, 8 per iteration on ARMv7E-M (Cortex-M4/M7): one word load brings 4
 * weights, ldm/stm move 4 sums, and sxtab adds each weight byte sign-extended (rotated into place):
 * 16 instructions per 8 cells, against 34 for the C loop below. Same sums mod 2^32 as the C. */
SNN_INLINE void d_s8(uint32_t *restrict b, const int8_t *restrict w, uint32_t n) {
    uint32_t n8 = n >> 3, q;
    if (n8) {
        __asm__ volatile("1:\n\t"
                         "ldr %[q], [%[w]], #4\n\t"
                         "ldm %[b], {r4, r5, r6, r7}\n\t"
                         "sxtab r4, r4, %[q]\n\t"
                         "sxtab r5, r5, %[q], ror #8\n\t"
                         "sxtab r6, r6, %[q], ror #16\n\t"
                         "sxtab r7, r7, %[q], ror #24\n\t"
                         "stmia %[b]!, {r4, r5, r6, r7}\n\t"
                         "ldr %[q], [%[w]], #4\n\t"
                         "ldm %[b], {r4, r5, r6, r7}\n\t"
                         "sxtab r4, r4, %[q]\n\t"
                         "sxtab r5, r5, %[q], ror #8\n\t"
                         "sxtab r6, r6, %[q], ror #16\n\t"
                         "sxtab r7, r7, %[q], ror #24\n\t"
                         "stmia %[b]!, {r4, r5, r6, r7}\n\t"
                         "subs %[n], %[n], #1\n\t"
                         "bne 1b"
                         : [b] "+r"(b), [w] "+r"(w), [n] "+r"(n8), [q] "=&r"(q)
                         :
                         : "r4", "r5", "r6", "r7", "cc", "memory");
    }
    n &= 7u;
    while (n--) *b++ += (uint32_t)(int32_t)*w++;
}
#else
DENSE_KERNEL(d_s8, int8_t, +=)
#endif

/* A delay per synapse: base = slot_base[delay]; b[idx] += w. 7 instructions per synapse; used where
 * delay segments would be too short to pay for their headers. Unrolled by 4 (code size). */
#define P4(OP, k) sb[dl[k]][ix[k]] OP (uint32_t)(int32_t)w[k]
#define DELAY_KERNEL(NAME, IT, WT, OP)                                                                     \
    SNN_INLINE void NAME(uint32_t *const *restrict sb, const IT *restrict ix, const uint8_t *restrict dl,  \
                         const WT *restrict w, uint32_t n) {                                               \
        const IT *end = ix + (n & ~3u);                                                                    \
        while (ix != end) {                                                                                \
            P4(OP, 0); P4(OP, 1); P4(OP, 2); P4(OP, 3);                                                    \
            ix += 4;                                                                                       \
            dl += 4;                                                                                       \
            w += 4;                                                                                        \
        }                                                                                                  \
        switch (n & 3u) {                                                                                  \
        case 3: P4(OP, 2); SNN_FALLTHROUGH;                                                                \
        case 2: P4(OP, 1); SNN_FALLTHROUGH;                                                                \
        case 1: P4(OP, 0); SNN_FALLTHROUGH;                                                                \
        default: break;                                                                                    \
        }                                                                                                  \
    }

DELAY_KERNEL(p_i8_u8, uint8_t, uint8_t, +=)
DELAY_KERNEL(p_i8_s8, uint8_t, int8_t, +=)
DELAY_KERNEL(p_i16_u8, uint16_t, uint8_t, +=)
DELAY_KERNEL(p_i16_s8, uint16_t, int8_t, +=)

/* Row loops over a list of binary spikes (deliver_group repeats a graded input spike count times, so
 * no kernel has a count loop). They return the synapse cells processed (the STATS counter). */
#define ROWS_SIMPLE(NAME, KERN, IT, WT)                                                                    \
    static SNN_NOINLINE SNN_DELIVER uint32_t NAME(uint32_t *b, const uint16_t *list, uint32_t ns,          \
                                                  const uint32_t *rp, const void *ixv, const void *wv) {    \
        const IT *ix = (const IT *)ixv;                                                                    \
        const WT *w = (const WT *)wv;                                                                      \
        const uint16_t *last = list + ns;                                                                  \
        uint32_t ops = 0;                                                                                  \
        while (list != last) {                                                                             \
            uint32_t j = *list++, s = rp[j], n = rp[j + 1] - s;                                            \
            ops += n;                                                                                      \
            KERN(b, ix + s, w + s, n);                                                                     \
        }                                                                                                  \
        return ops;                                                                                        \
    }

#define ROWS_DENSE(NAME, KERN, WT)                                                                         \
    static SNN_NOINLINE SNN_DELIVER uint32_t NAME(uint32_t *b, const uint16_t *list, uint32_t ns,          \
                                                  uint32_t n_post, const void *wv) {                       \
        const WT *w = (const WT *)wv;                                                                      \
        const uint16_t *last = list + ns;                                                                  \
        while (list != last) KERN(b, w + (uint32_t)*list++ * n_post, n_post);                               \
        return ns * n_post;                                                                                \
    }

/* segmented rows: per segment {delay, block, count}; slot_base[d] is ring slot t+1+d */
#define ROWS_SEG(NAME, KERN, IT, WT, BLOCK)                                                                \
    static SNN_NOINLINE SNN_DELIVER uint32_t NAME(uint32_t *const *slot_base, const uint16_t *list,        \
                                                  uint32_t ns, const uint32_t *rp, const uint32_t *sp,     \
                                                  const snn_img_seg_t *sg, const void *ixv, const void *wv) { \
        const IT *ix = (const IT *)ixv;                                                                    \
        const WT *w = (const WT *)wv;                                                                      \
        uint32_t ops = 0, k;                                                                               \
        for (k = 0; k < ns; k++) {                                                                         \
            const uint32_t j = list[k];                                                                    \
            const snn_img_seg_t *q = sg + sp[j], *qe = sg + sp[j + 1];                                     \
            uint32_t s = rp[j];                                                                            \
            ops += rp[j + 1] - rp[j];                                                                      \
            for (; q != qe; q++) {                                                                         \
                uint32_t *b = slot_base[q->delay] + (BLOCK ? ((uint32_t)q->block << 8) : 0u);              \
                KERN(b, ix + s, w + s, q->count);                                                          \
                s += q->count;                                                                             \
            }                                                                                              \
        }                                                                                                  \
        return ops;                                                                                        \
    }

#define ROWS_DELAYS(NAME, KERN, IT, WT)                                                                    \
    static SNN_NOINLINE SNN_DELIVER uint32_t NAME(uint32_t *const *sb, const uint16_t *list, uint32_t ns,  \
                                                  const uint32_t *rp, const uint8_t *dl, const void *ixv,  \
                                                  const void *wv) {                                        \
        const IT *ix = (const IT *)ixv;                                                                    \
        const WT *w = (const WT *)wv;                                                                      \
        uint32_t ops = 0, k;                                                                               \
        for (k = 0; k < ns; k++) {                                                                         \
            uint32_t j = list[k], s = rp[j], n = rp[j + 1] - s;                                            \
            ops += n;                                                                                      \
            KERN(sb, ix + s, dl + s, w + s, n);                                                            \
        }                                                                                                  \
        return ops;                                                                                        \
    }

ROWS_DELAYS(dly_i8_u8, p_i8_u8, uint8_t, uint8_t)
ROWS_DELAYS(dly_i8_s8, p_i8_s8, uint8_t, int8_t)
ROWS_DELAYS(dly_i16_u8, p_i16_u8, uint16_t, uint8_t)
ROWS_DELAYS(dly_i16_s8, p_i16_s8, uint16_t, int8_t)
ROWS_SIMPLE(rows_i8_u8, k_i8_u8, uint8_t, uint8_t)
ROWS_SIMPLE(rows_i8_n8, k_i8_n8, uint8_t, uint8_t)
ROWS_SIMPLE(rows_i8_s8, k_i8_s8, uint8_t, int8_t)
ROWS_SIMPLE(rows_i8_s16, k_i8_s16, uint8_t, int16_t)
ROWS_SIMPLE(rows_i16_u8, k_i16_u8, uint16_t, uint8_t)
ROWS_SIMPLE(rows_i16_n8, k_i16_n8, uint16_t, uint8_t)
ROWS_SIMPLE(rows_i16_s8, k_i16_s8, uint16_t, int8_t)
ROWS_SIMPLE(rows_i16_s16, k_i16_s16, uint16_t, int16_t)
ROWS_DENSE(rows_d_u8, d_u8, uint8_t)
ROWS_DENSE(rows_d_n8, d_n8, uint8_t)
ROWS_DENSE(rows_d_s8, d_s8, int8_t)
ROWS_DENSE(rows_d_s16, d_s16, int16_t)
ROWS_SEG(seg_i8_u8, k_i8_u8, uint8_t, uint8_t, 1)
ROWS_SEG(seg_i8_n8, k_i8_n8, uint8_t, uint8_t, 1)
ROWS_SEG(seg_i8_s8, k_i8_s8, uint8_t, int8_t, 1)
ROWS_SEG(seg_i8_s16, k_i8_s16, uint8_t, int16_t, 1)
ROWS_SEG(seg_i16_u8, k_i16_u8, uint16_t, uint8_t, 0)
ROWS_SEG(seg_i16_n8, k_i16_n8, uint16_t, uint8_t, 0)
ROWS_SEG(seg_i16_s8, k_i16_s8, uint16_t, int8_t, 0)
ROWS_SEG(seg_i16_s16, k_i16_s16, uint16_t, int16_t, 0)

typedef uint32_t (*rows_simple_fn)(uint32_t *, const uint16_t *, uint32_t, const uint32_t *, const void *,
                                   const void *);
typedef uint32_t (*rows_dense_fn)(uint32_t *, const uint16_t *, uint32_t, uint32_t, const void *);
typedef uint32_t (*rows_seg_fn)(uint32_t *const *, const uint16_t *, uint32_t, const uint32_t *, const uint32_t *,
                                const snn_img_seg_t *, const void *, const void *);

/* [idx16][wkind] */
static const rows_simple_fn rows_simple[2][4] = {{rows_i8_u8, rows_i8_n8, rows_i8_s8, rows_i8_s16},
                                                 {rows_i16_u8, rows_i16_n8, rows_i16_s8, rows_i16_s16}};
static const rows_dense_fn rows_dense[4] = {rows_d_u8, rows_d_n8, rows_d_s8, rows_d_s16};
static const rows_seg_fn rows_seg[2][4] = {{seg_i8_u8, seg_i8_n8, seg_i8_s8, seg_i8_s16},
                                           {seg_i16_u8, seg_i16_n8, seg_i16_s8, seg_i16_s16}};

/* ---- convolution: each input spike scatters its kernel taps ----
 * For a spike at (ci, y, x), the row table lists the runs of kernel rows that input row y reaches
 * (through the pool, if any), the column table the runs of kernel columns input column x reaches
 * (snn_image.h). Each (column run, row run) pair is one block: its rows a fixed stride apart in the
 * weights and in the sums. Into a channel-last scratch (SNN_POPF_HWC) a column run is contiguous in the
 * weights and in the sums, so each of its rows is a dense row (d_s8: 2 instructions per synaptic event
 * on the M4); a 3x3 conv of 16 channels is one block of 3 rows x 48 cells per spike. Into a
 * channel-first ring (layout 0) the cells of one tap are h_out * w_out apart: 4 per iteration, the
 * remainder through a fall-through switch. */

#define C4(k, off) b[off] += (uint32_t)(int32_t)w[k]
#define CONV_TAPS(NAME, WT)                                                                                \
    SNN_INLINE void NAME(uint32_t *restrict b, const WT *restrict w, uint32_t n, uint32_t s) {              \
        const uint32_t s2 = s + s, s3 = s2 + s, s4 = s2 + s2;                                              \
        const WT *end = w + (n & ~3u);                                                                     \
        while (w != end) {                                                                                 \
            C4(0, 0); C4(1, s); C4(2, s2); C4(3, s3);                                                      \
            b += s4;                                                                                       \
            w += 4;                                                                                        \
        }                                                                                                  \
        switch (n & 3u) {                                                                                  \
        case 3: C4(2, s2); SNN_FALLTHROUGH;                                                                \
        case 2: C4(1, s); SNN_FALLTHROUGH;                                                                 \
        case 1: C4(0, 0); SNN_FALLTHROUGH;                                                                 \
        default: break;                                                                                    \
        }                                                                                                  \
    }

CONV_TAPS(c_s8, int8_t)
CONV_TAPS(c_s16, int16_t)
SNN_INLINE void l_s8(uint32_t *restrict b, const int8_t *restrict w, uint32_t n, uint32_t s) {
    (void)s;
    d_s8(b, w, n);
}
SNN_INLINE void l_s16(uint32_t *restrict b, const int16_t *restrict w, uint32_t n, uint32_t s) {
    (void)s;
    d_s16(b, w, n);
}

/* One block: m kernel rows of a run of n cells, the rows st[0] sums and st[1] weights apart (st[2]: the
 * cells' stride channel-first). Out of line so that its loops get the registers. */
#define CONV_BLOCK(NAME, KERN, WT)                                                                         \
    static SNN_NOINLINE SNN_DELIVER void NAME(uint32_t *b, const void *wv, uint32_t nm, const uint32_t *st) { \
        const WT *w = (const WT *)wv;                                                                      \
        const uint32_t n = nm & 0xFFFFu, bs = st[0], ws = st[1], s = st[2];                               \
        uint32_t m = nm >> 16;                                                                             \
        do {                                                                                               \
            KERN(b, w, n, s);                                                                              \
            b += bs;                                                                                       \
            w += ws;                                                                                       \
        } while (--m);                                                                                     \
    }

CONV_BLOCK(blk_s8, c_s8, int8_t)
CONV_BLOCK(blk_s16, c_s16, int16_t)
CONV_BLOCK(blkl_s8, l_s8, int8_t)
CONV_BLOCK(blkl_s16, l_s16, int16_t)

typedef void (*conv_block_fn)(uint32_t *, const void *, uint32_t, const uint32_t *);
/* [layout][wkind]: kernels are int8 or int16 (the packer stores u8 and n8 mantissas as int16: flash is
 * cheap, code is not) */
static const conv_block_fn conv_blocks[2][4] = {{NULL, NULL, blk_s8, blk_s16}, {NULL, NULL, blkl_s8, blkl_s16}};

/* Every spike of a list (binary: deliver_group repeats a graded input spike count times) through the
 * conv's tap tables, one block per (column run, row run). */
static SNN_NOINLINE SNN_DELIVER uint32_t conv_spikes(uint32_t *b, const uint8_t *img, const snn_img_conv_t *cv,
                                                     uint32_t wkind, const uint8_t *k, const uint16_t *list,
                                                     uint32_t ns) {
    const conv_block_fn block = conv_blocks[cv->layout][wkind];
    const uint32_t wsh = wkind == SNN_W_S16 ? 1u : 0u, hwc = cv->layout;
    const uint32_t w_in = cv->w_in, hw = (uint32_t)cv->h_in * w_in;
    const uint32_t opg = (uint32_t)cv->c_out / cv->groups, cin_g = (uint32_t)cv->c_in / cv->groups;
    const uint32_t s = (uint32_t)cv->h_out * cv->w_out, blk = (uint32_t)cv->kh * cv->kw * opg;
    const uint32_t gstep = hwc ? opg : opg * s;
    /* merged kernel rows are a fixed stride apart: in the sums, in the weights; then the tap stride */
    const uint32_t st[3] = {(uint32_t)cv->w_out * (hwc ? cv->c_out : 1u), (uint32_t)cv->kw * opg, s};
    const uint16_t *rp = (const uint16_t *)(const void *)(img + cv->rows_off);
    const uint16_t *cp = (const uint16_t *)(const void *)(img + cv->cols_off);
    const uint16_t *re = rp + 2u * ((cv->h_in + 2u) / 2u); /* past the padded pointers */
    const uint16_t *ce = cp + 2u * ((w_in + 2u) / 2u);
    const uint16_t *const last = list + ns;
    uint32_t ops = 0;
    while (list != last) {
        const uint32_t j = *list++;
        const uint32_t ci = j / hw, rem = j - ci * hw, y = rem / w_in, x = rem - y * w_in;
        const uint16_t *const r0 = re + 3u * rp[y], *const r_end = re + 3u * rp[y + 1u];
        const uint16_t *const c0 = ce + 3u * cp[x], *const c_end = ce + 3u * cp[x + 1u];
        const uint8_t *const wb = k + ((ci * blk) << wsh);
        uint32_t *const bb = b + (ci / cin_g) * gstep;
        const uint16_t *cc, *r;
        for (cc = c0; cc != c_end; cc += 3)
            for (r = r0; r != r_end; r += 3) {
                ops += (uint32_t)cc[2] * r[2];
                block(bb + cc[1] + r[1], wb + (((uint32_t)cc[0] + r[0]) << wsh), cc[2] | (uint32_t)r[2] << 16, st);
            }
    }
    return ops;
}

#endif
