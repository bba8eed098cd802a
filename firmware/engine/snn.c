/* neurocc SNN engine (see snn.h). The arithmetic follows compiler/ir/lif.py LifNeurons.step exactly,
 * with the widths of the image header (decay_bits, state_bits, activation_shift, threshold_shift):
 *
 *   per projection and delay d: acc = sum of weights of spiking inputs, shifted by the weight exponent
 *   (left, or arithmetic right = floor), lands at t+1+d;
 *   u = wrap_state(int32(decay(u, du+1) + (a_in << activation_shift)));  v = clip(decay(v, dv) + u + bias);
 *   spike if v > vth << threshold_shift (stored shifted).
 *
 * Synaptic sums land unshifted in rings; the shift is applied when a slot is read. A left shift is
 * linear mod 2^32, so projections with equal non-negative shifts into one population share a ring;
 * a right shift (floor) is not, so the packer gives each (projection, delay) with a negative shift its
 * own ring and every slot of it holds exactly one step's sum, as the reference floors it.
 */
#include "snn.h"

#include <stddef.h>

#if defined(__GNUC__)
#define SNN_INLINE static inline __attribute__((always_inline))
#define SNN_NOINLINE __attribute__((noinline))
#define SNN_FALLTHROUGH __attribute__((fallthrough))
#else
#define SNN_INLINE static inline
#define SNN_NOINLINE
#define SNN_FALLTHROUGH
#endif
#if defined(__GNUC__) && defined(__ELF__)
/* the hot paths in sections of their own: the bench counts instructions inside their bounds */
#define SNN_DELIVER __attribute__((section(".text.snn_deliver")))
#define SNN_UPDATE __attribute__((section(".text.snn_update")))
#else
#define SNN_DELIVER
#define SNN_UPDATE
#endif

/* ---- CRC-32 (reflected 0xEDB88320), 16-entry table: 64 bytes of flash, 2 lookups per byte ---- */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t snn_crc32(uint32_t crc, const uint8_t *data, uint32_t len) {
    crc = ~crc;
    while (len--) {
        crc ^= *data++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

/* ---- helpers ---- */

SNN_INLINE int32_t u2i(uint32_t x) {
    /* two's-complement reinterpretation without implementation-defined conversion */
    return x < 0x80000000u ? (int32_t)x : -(int32_t)(~x) - 1;
}

SNN_INLINE int32_t decay(int32_t x, uint32_t f, uint32_t db, uint32_t hi_shift) {
    /* Lava: sign(x*f) * (|x*f| >> db), truncating toward zero; f = 2^db - D in [0, 2^db], db in 1..16,
     * hi_shift = 32 - db. |x| * f < 2^48 fits uint64 and the quotient (<= |x|) fits 32 bits, so it is
     * the low word >> db OR the high word << (32 - db): no 64-bit shift by a variable amount. */
    uint32_t m = x < 0 ? 0u - (uint32_t)x : (uint32_t)x;
    uint64_t p = (uint64_t)m * f;
    uint32_t q = ((uint32_t)p >> db) | ((uint32_t)(p >> 32) << hi_shift);
    return u2i(x < 0 ? 0u - q : q);
}

SNN_INLINE uint32_t arrive(uint32_t raw, int32_t shift) {
    if (shift >= 0) return raw << shift;
    {
        int32_t x = u2i(raw);
        int32_t s = -shift;
        /* floor division by 2^s, portable for negative x */
        return (uint32_t)(x >= 0 ? (x >> s) : ~((~x) >> s));
    }
}

static uint32_t align4(uint32_t x) { return (x + 3u) & ~3u; }

static int in_image(uint32_t size, uint32_t off, uint64_t bytes, uint32_t align) {
    return off >= sizeof(snn_img_header_t) && (off % align) == 0 && (uint64_t)off + bytes <= size;
}

static uint32_t wsize(uint8_t wkind) { return wkind == SNN_W_S16 ? 2u : 1u; }

static uint32_t rowptr(const uint8_t *img, uint32_t off, uint32_t j) {
    return ((const uint32_t *)(const void *)(img + off))[j];
}

/* ---- validation: every bound the hot loops rely on is checked here, once ---- */

static uint32_t arena_layout(const snn_img_header_t *h) {
    uint32_t a = 0;
    a += 4u * h->n_state * 2u;                /* u, v */
    a += 4u * h->ring_words;                  /* rings */
    a += 4u * h->n_rings;                     /* ring_base */
    a += 4u * h->max_lif;                     /* a_in */
    a += 4u * h->n_pops * 2u;                 /* spike_off, spike_n */
    a += align4(2u * h->n_neurons);           /* spike_idx */
    a += align4(h->n_neurons);                /* spike_cnt */
    return a;
}

static int check_group(const uint8_t *img, uint32_t size, const snn_img_header_t *h, const snn_img_pop_t *pops,
                       const snn_img_ring_t *rings, const snn_img_group_t *g) {
    const snn_img_ring_t *r;
    uint32_t n_pre, n_post, j, k, ws;
    if (g->pre >= h->n_pops || g->ring >= h->n_rings || g->wkind > SNN_W_S16) return SNN_E_FORMAT;
    if (g->flags & ~(uint8_t)(SNN_G_IDX16 | SNN_G_SEGMENTED | SNN_G_DENSE | SNN_G_DELAYS)) return SNN_E_FORMAT;
    if ((g->flags & SNN_G_DELAYS) && ((g->flags & (SNN_G_SEGMENTED | SNN_G_DENSE)) || g->wkind == SNN_W_N8 ||
                                      g->wkind == SNN_W_S16))
        return SNN_E_FORMAT;
    r = &rings[g->ring];
    n_pre = pops[g->pre].n;
    n_post = pops[r->post].n;
    ws = wsize(g->wkind);
    if (!in_image(size, g->w_off, (uint64_t)g->n_syn * ws, ws)) return SNN_E_SIZE;
    if (g->flags & SNN_G_DENSE) {
        if (g->flags != SNN_G_DENSE || (uint64_t)n_pre * n_post != g->n_syn || g->delay >= r->slots)
            return SNN_E_FORMAT;
        return SNN_OK;
    }
    if (!in_image(size, g->row_off, 4ull * (n_pre + 1u), 4)) return SNN_E_SIZE;
    if (!in_image(size, g->idx_off, (uint64_t)g->n_syn * ((g->flags & SNN_G_IDX16) ? 2u : 1u),
                  (g->flags & SNN_G_IDX16) ? 2u : 1u))
        return SNN_E_SIZE;
    if (rowptr(img, g->row_off, 0) != 0 || rowptr(img, g->row_off, n_pre) != g->n_syn) return SNN_E_FORMAT;
    for (j = 0; j < n_pre; j++)
        if (rowptr(img, g->row_off, j + 1) < rowptr(img, g->row_off, j)) return SNN_E_FORMAT;
    if (g->flags & SNN_G_DELAYS) {
        if (!in_image(size, g->seg_off, g->n_syn, 1)) return SNN_E_SIZE;
        for (k = 0; k < g->n_syn; k++)
            if (img[g->seg_off + k] >= r->slots) return SNN_E_FORMAT;
    } else if (!(g->flags & SNN_G_SEGMENTED) && g->delay >= r->slots) {
        return SNN_E_FORMAT;
    }
    if (!(g->flags & SNN_G_SEGMENTED)) {
        for (k = 0; k < g->n_syn; k++) {
            uint32_t ix = (g->flags & SNN_G_IDX16) ? ((const uint16_t *)(const void *)(img + g->idx_off))[k]
                                                   : img[g->idx_off + k];
            if (ix >= n_post) return SNN_E_FORMAT;
        }
        return SNN_OK;
    }
    {
        const snn_img_seg_t *seg;
        uint32_t n_seg;
        if (!in_image(size, g->segptr_off, 4ull * (n_pre + 1u), 4)) return SNN_E_SIZE;
        n_seg = rowptr(img, g->segptr_off, n_pre);
        if (rowptr(img, g->segptr_off, 0) != 0 || !in_image(size, g->seg_off, 4ull * n_seg, 4)) return SNN_E_SIZE;
        seg = (const snn_img_seg_t *)(const void *)(img + g->seg_off);
        for (j = 0; j < n_pre; j++) {
            uint32_t s0 = rowptr(img, g->segptr_off, j), s1 = rowptr(img, g->segptr_off, j + 1);
            uint32_t syn = rowptr(img, g->row_off, j), end = rowptr(img, g->row_off, j + 1);
            if (s1 < s0 || s1 > n_seg) return SNN_E_FORMAT;
            for (k = s0; k < s1; k++) {
                uint32_t base = (uint32_t)seg[k].block << 8, c;
                if (seg[k].delay >= r->slots) return SNN_E_FORMAT;
                if ((g->flags & SNN_G_IDX16) && seg[k].block) return SNN_E_FORMAT;
                if ((uint64_t)syn + seg[k].count > end) return SNN_E_FORMAT;
                for (c = 0; c < seg[k].count; c++, syn++) {
                    uint32_t ix = (g->flags & SNN_G_IDX16)
                                      ? ((const uint16_t *)(const void *)(img + g->idx_off))[syn]
                                      : img[g->idx_off + syn];
                    if (base + ix >= n_post) return SNN_E_FORMAT;
                }
            }
            if (syn != end) return SNN_E_FORMAT;
        }
    }
    return SNN_OK;
}

int snn_validate(const uint8_t *img, uint32_t size, uint32_t board_id, uint32_t *arena_need) {
    const snn_img_header_t *h = (const snn_img_header_t *)(const void *)img;
    const snn_img_pop_t *pops;
    const snn_img_ring_t *rings;
    const snn_img_group_t *groups;
    uint32_t p, r, gi, n_state = 0, n_neurons = 0, max_lif = 0, need;
    uint64_t ring_words = 0;
    uint32_t dmax;
    int rc;
    /* magic, version and header size first (they sit in the first 8 bytes of every format version):
     * an image of another version is refused as such, whatever its size */
    if (img == NULL || size < 8u || ((uintptr_t)img & 3u)) return SNN_E_SIZE;
    if (h->magic != SNN_IMG_MAGIC) return SNN_E_MAGIC;
    if (h->version != SNN_IMG_VERSION || h->header_size != sizeof(snn_img_header_t)) return SNN_E_VERSION;
    if (size < sizeof(snn_img_header_t)) return SNN_E_SIZE;
    if (h->image_size > size || h->image_size < sizeof(snn_img_header_t)) return SNN_E_SIZE;
    size = h->image_size;
    if (snn_crc32(0, img + SNN_CRC_START, size - SNN_CRC_START) != h->crc32) return SNN_E_CRC;
    if (board_id != SNN_BOARD_ANY && h->board_id != SNN_BOARD_ANY && h->board_id != board_id) return SNN_E_BOARD;
    /* the widths the arithmetic below computes exactly (bounds and reasons: snn_image.h) */
    if (h->decay_bits < SNN_IMG_DECAY_BITS_MIN || h->decay_bits > SNN_IMG_DECAY_BITS_MAX ||
        h->state_bits < SNN_IMG_STATE_BITS_MIN || h->state_bits > SNN_IMG_STATE_BITS_MAX ||
        h->activation_shift > SNN_IMG_ACTIVATION_SHIFT_MAX || h->threshold_shift > SNN_IMG_THRESHOLD_SHIFT_MAX)
        return SNN_E_WIDTHS;
    if (h->reserved != 0 || h->n_pops == 0) return SNN_E_FORMAT;
    dmax = (1u << h->decay_bits) - 1u;
    if (!in_image(size, h->pops_off, (uint64_t)h->n_pops * sizeof(snn_img_pop_t), 4) ||
        !in_image(size, h->rings_off, (uint64_t)h->n_rings * sizeof(snn_img_ring_t), 4) ||
        !in_image(size, h->groups_off, (uint64_t)h->n_groups * sizeof(snn_img_group_t), 4))
        return SNN_E_SIZE;
    pops = (const snn_img_pop_t *)(const void *)(img + h->pops_off);
    rings = (const snn_img_ring_t *)(const void *)(img + h->rings_off);
    groups = (const snn_img_group_t *)(const void *)(img + h->groups_off);
    for (p = 0; p < h->n_pops; p++) {
        const snn_img_pop_t *q = &pops[p];
        if (q->kind > SNN_POP_LIF || q->n == 0 || q->n > 65535u) return SNN_E_FORMAT;
        if ((uint32_t)q->first_group + q->n_groups > h->n_groups) return SNN_E_FORMAT;
        if ((uint32_t)q->first_ring + q->n_rings > h->n_rings) return SNN_E_FORMAT;
        for (gi = q->first_group; gi < (uint32_t)q->first_group + q->n_groups; gi++)
            if (groups[gi].pre != p) return SNN_E_FORMAT;
        for (r = q->first_ring; r < (uint32_t)q->first_ring + q->n_rings; r++)
            if (rings[r].post != p) return SNN_E_FORMAT;
        n_neurons += q->n;
        if (q->kind == SNN_POP_INPUT) {
            if (q->n_rings || q->du || q->dv || q->vth_shifted || (q->flags & SNN_POPF_BIAS)) return SNN_E_FORMAT;
            continue;
        }
        if (q->du > dmax || q->dv > dmax || q->vth_shifted < 0 || q->state_base != n_state) return SNN_E_FORMAT;
        if ((uint32_t)q->vth_shifted & ((1u << h->threshold_shift) - 1u)) return SNN_E_FORMAT; /* not vth << shift */
        if (q->flags & SNN_POPF_BIAS) {
            const int32_t *b;
            uint32_t i;
            if (!in_image(size, q->bias_off, 4ull * q->n, 4)) return SNN_E_SIZE;
            b = (const int32_t *)(const void *)(img + q->bias_off);
            for (i = 0; i < q->n; i++)
                if (b[i] > (1 << 28) || b[i] < -(1 << 28)) return SNN_E_FORMAT;
        }
        n_state += q->n;
        if (q->n > max_lif) max_lif = q->n;
    }
    for (r = 0; r < h->n_rings; r++) {
        if (rings[r].post >= h->n_pops || pops[rings[r].post].kind != SNN_POP_LIF) return SNN_E_FORMAT;
        if (rings[r].slots == 0 || rings[r].shift > 31 || rings[r].shift < -31) return SNN_E_FORMAT;
        ring_words += (uint64_t)rings[r].slots * pops[rings[r].post].n;
    }
    if (n_state != h->n_state || n_neurons != h->n_neurons || max_lif != h->max_lif ||
        ring_words != h->ring_words)
        return SNN_E_FORMAT;
    for (gi = 0; gi < h->n_groups; gi++) {
        rc = check_group(img, size, h, pops, rings, &groups[gi]);
        if (rc != SNN_OK) return rc;
    }
    need = arena_layout(h);
    if (need != h->arena_bytes) return SNN_E_FORMAT;
    if (arena_need) *arena_need = need;
    return SNN_OK;
}

int snn_open(snn_t *e, const uint8_t *img, uint32_t size, uint32_t board_id, void *arena, uint32_t arena_size) {
    uint32_t need = 0, r, p, words = 0, off = 0;
    uint8_t *a = (uint8_t *)arena;
    const snn_img_header_t *h;
    int rc = snn_validate(img, size, board_id, &need);
    if (rc != SNN_OK) return rc;
    if (arena == NULL || need > arena_size || ((uintptr_t)arena & 3u)) return SNN_E_ARENA;
    h = (const snn_img_header_t *)(const void *)img;
    e->img = img;
    e->hdr = h;
    e->pops = (const snn_img_pop_t *)(const void *)(img + h->pops_off);
    e->rings = (const snn_img_ring_t *)(const void *)(img + h->rings_off);
    e->groups = (const snn_img_group_t *)(const void *)(img + h->groups_off);
    e->u = (int32_t *)(void *)a;
    a += 4u * h->n_state;
    e->v = (int32_t *)(void *)a;
    a += 4u * h->n_state;
    e->ring_mem = (uint32_t *)(void *)a;
    a += 4u * h->ring_words;
    e->ring_base = (uint32_t *)(void *)a;
    a += 4u * h->n_rings;
    e->a_in = (int32_t *)(void *)a;
    a += 4u * h->max_lif;
    e->spike_off = (uint32_t *)(void *)a;
    a += 4u * h->n_pops;
    e->spike_n = (uint32_t *)(void *)a;
    a += 4u * h->n_pops;
    e->spike_idx = (uint16_t *)(void *)a;
    a += align4(2u * h->n_neurons);
    e->spike_cnt = a;
    for (r = 0; r < h->n_rings; r++) {
        e->ring_base[r] = words;
        words += (uint32_t)e->rings[r].slots * e->pops[e->rings[r].post].n;
    }
    for (p = 0; p < h->n_pops; p++) {
        e->spike_off[p] = off;
        off += e->pops[p].n;
    }
    snn_reset(e);
    return SNN_OK;
}

void snn_reset(snn_t *e) {
    const snn_img_header_t *h = e->hdr;
    uint32_t i;
    for (i = 0; i < h->n_state; i++) e->u[i] = e->v[i] = 0;
    for (i = 0; i < h->ring_words; i++) e->ring_mem[i] = 0;
    for (i = 0; i < h->n_pops; i++) e->spike_n[i] = 0;
    e->t = 0;
    e->graded = 0;
    e->stats.steps = e->stats.synapse_ops = e->stats.neuron_updates = 0;
    e->stats.spikes_in = e->stats.spikes_out = 0;
}

void snn_clear_inputs(snn_t *e) {
    uint32_t p;
    e->graded = 0;
    for (p = 0; p < e->hdr->n_pops; p++)
        if (e->pops[p].kind == SNN_POP_INPUT) e->spike_n[p] = 0;
}

int snn_input(snn_t *e, uint32_t pop, uint32_t neuron, uint32_t count) {
    uint32_t n, off;
    if (pop >= e->hdr->n_pops || e->pops[pop].kind != SNN_POP_INPUT) return SNN_E_INPUT;
    if (neuron >= e->pops[pop].n || count == 0 || count > 255u) return SNN_E_INPUT;
    n = e->spike_n[pop];
    off = e->spike_off[pop];
    if (n && e->spike_idx[off + n - 1] >= neuron) return SNN_E_INPUT; /* strictly ascending: no overflow */
    e->spike_idx[off + n] = (uint16_t)neuron;
    e->spike_cnt[off + n] = (uint8_t)count;
    e->spike_n[pop] = n + 1;
    e->stats.spikes_in += count;
    if (count > 1u) e->graded = 1;
    return SNN_OK;
}

const uint16_t *snn_spikes(const snn_t *e, uint32_t pop, uint32_t *n) {
    *n = e->spike_n[pop];
    return e->spike_idx + e->spike_off[pop];
}

/* ---- neuron update ---- */

SNN_UPDATE void snn_update_pop(snn_t *e, uint32_t p) {
    const snn_img_pop_t *q = &e->pops[p];
    const uint32_t n = q->n;
    uint32_t *a = (uint32_t *)(void *)e->a_in;
    int32_t *u = e->u + q->state_base, *v = e->v + q->state_base;
    const int32_t *bias = (q->flags & SNN_POPF_BIAS) ? (const int32_t *)(const void *)(e->img + q->bias_off) : NULL;
    /* the header's widths; validated: 1 <= db <= 16, du, dv < 2^db, act <= 31 */
    const uint32_t db = e->hdr->decay_bits, hi_shift = 32u - db, act = e->hdr->activation_shift;
    const uint32_t fu = (1u << db) - ((uint32_t)q->du + 1u), fv = (1u << db) - (uint32_t)q->dv;
    const int32_t vth = q->vth_shifted;
    const int32_t smax = (int32_t)1 << (e->hdr->state_bits - 1), vmax = smax - 1;
    uint16_t *out = e->spike_idx + e->spike_off[p];
    uint32_t i, r, ns = 0;
    /* arrivals: read slot t of every ring into this population, shift, and clear it */
    if (q->n_rings == 0)
        for (i = 0; i < n; i++) a[i] = 0;
    for (r = q->first_ring; r < (uint32_t)q->first_ring + q->n_rings; r++) {
        const snn_img_ring_t *rg = &e->rings[r];
        uint32_t *src = e->ring_mem + e->ring_base[r] + (e->t % rg->slots) * n;
        const int32_t sh = rg->shift;
        if (r == q->first_ring) {
            for (i = 0; i < n; i++) { a[i] = arrive(src[i], sh); src[i] = 0; }
        } else {
            for (i = 0; i < n; i++) { a[i] += arrive(src[i], sh); src[i] = 0; }
        }
    }
    for (i = 0; i < n; i++) {
        /* u: int32 arithmetic (the uint32 shift and sum wrap mod 2^32, as the reference's wrap to 32 bits),
         * then Lava's literal state wrap (one correction each way) */
        int32_t c = u2i((uint32_t)decay(u[i], fu, db, hi_shift) + (a[i] << act));
        int32_t w = c, s, x;
        if (c > smax) w = u2i((uint32_t)c - 2u * (uint32_t)smax);
        if (w <= -smax) w = u2i((uint32_t)c + 2u * (uint32_t)smax);
        u[i] = w;
        /* v: |decay(v) + bias| < 2^29, so clamping u to +-2^30 first keeps the sum in int32 and
         * gives the same clipped result as the reference's int64 sum */
        s = decay(v[i], fv, db, hi_shift) + (bias ? bias[i] : 0);
        x = w > (1 << 30) ? (1 << 30) : (w < -(1 << 30) ? -(1 << 30) : w);
        x += s;
        if (x > vmax) x = vmax;
        if (x < -vmax) x = -vmax;
        if (x > vth) {
            x = 0;
            out[ns++] = (uint16_t)i;
        }
        v[i] = x;
    }
    e->spike_n[p] = ns;
    e->stats.neuron_updates += n;
    e->stats.spikes_out += ns;
}

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
DENSE_KERNEL(d_s8, int8_t, +=)
DENSE_KERNEL(d_s16, int16_t, +=)

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

/* Row loops. `cnt` is NULL for binary (LIF) spikes: the common path has no count loop at all.
 * They return the synapse cells processed (the STATS counter). */
#define ROWS_SIMPLE(NAME, KERN, IT, WT)                                                                    \
    static SNN_NOINLINE SNN_DELIVER uint32_t NAME(uint32_t *b, const uint16_t *list, const uint8_t *cnt,   \
                                                  uint32_t ns, const uint32_t *rp, const void *ixv,         \
                                                  const void *wv) {                                         \
        const IT *ix = (const IT *)ixv;                                                                    \
        const WT *w = (const WT *)wv;                                                                      \
        const uint16_t *last = list + ns;                                                                  \
        uint32_t ops = 0;                                                                                  \
        if (!cnt) {                                                                                        \
            while (list != last) {                                                                         \
                uint32_t j = *list++, s = rp[j], n = rp[j + 1] - s;                                        \
                ops += n;                                                                                  \
                KERN(b, ix + s, w + s, n);                                                                 \
            }                                                                                              \
            return ops;                                                                                    \
        }                                                                                                  \
        while (list != last) {                                                                             \
            uint32_t j = *list++, s = rp[j], n = rp[j + 1] - s, c = *cnt++;                                \
            ops += n * c;                                                                                  \
            while (c--) KERN(b, ix + s, w + s, n);                                                         \
        }                                                                                                  \
        return ops;                                                                                        \
    }

#define ROWS_DENSE(NAME, KERN, WT)                                                                         \
    static SNN_NOINLINE SNN_DELIVER uint32_t NAME(uint32_t *b, const uint16_t *list, const uint8_t *cnt,   \
                                                  uint32_t ns, uint32_t n_post, const void *wv) {           \
        const WT *w = (const WT *)wv;                                                                      \
        const uint16_t *last = list + ns;                                                                  \
        uint32_t ops = 0;                                                                                  \
        if (!cnt) {                                                                                        \
            while (list != last) KERN(b, w + (uint32_t)*list++ * n_post, n_post);                           \
            return ns * n_post;                                                                            \
        }                                                                                                  \
        while (list != last) {                                                                             \
            uint32_t j = *list++, c = *cnt++;                                                              \
            ops += n_post * c;                                                                             \
            while (c--) KERN(b, w + j * n_post, n_post);                                                   \
        }                                                                                                  \
        return ops;                                                                                        \
    }

/* segmented rows: per segment {delay, block, count}; slot_base[d] is ring slot t+1+d */
#define ROWS_SEG(NAME, KERN, IT, WT, BLOCK)                                                                \
    static SNN_NOINLINE SNN_DELIVER uint32_t NAME(uint32_t *const *slot_base, const uint16_t *list,        \
                                                  const uint8_t *cnt, uint32_t ns, const uint32_t *rp,     \
                                                  const uint32_t *sp, const snn_img_seg_t *sg,              \
                                                  const void *ixv, const void *wv) {                        \
        const IT *ix = (const IT *)ixv;                                                                    \
        const WT *w = (const WT *)wv;                                                                      \
        uint32_t ops = 0, k;                                                                               \
        for (k = 0; k < ns; k++) {                                                                         \
            uint32_t j = list[k], c = cnt ? cnt[k] : 1u;                                                   \
            ops += (rp[j + 1] - rp[j]) * c;                                                                \
            while (c--) {                                                                                  \
                const snn_img_seg_t *q = sg + sp[j], *qe = sg + sp[j + 1];                                 \
                uint32_t s = rp[j];                                                                        \
                for (; q != qe; q++) {                                                                     \
                    uint32_t *b = slot_base[q->delay] + (BLOCK ? ((uint32_t)q->block << 8) : 0u);          \
                    KERN(b, ix + s, w + s, q->count);                                                      \
                    s += q->count;                                                                         \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
        return ops;                                                                                        \
    }

#define ROWS_DELAYS(NAME, KERN, IT, WT)                                                                    \
    static SNN_NOINLINE SNN_DELIVER uint32_t NAME(uint32_t *const *sb, const uint16_t *list,               \
                                                  const uint8_t *cnt, uint32_t ns, const uint32_t *rp,     \
                                                  const uint8_t *dl, const void *ixv, const void *wv) {     \
        const IT *ix = (const IT *)ixv;                                                                    \
        const WT *w = (const WT *)wv;                                                                      \
        uint32_t ops = 0, k;                                                                               \
        for (k = 0; k < ns; k++) {                                                                         \
            uint32_t j = list[k], s = rp[j], n = rp[j + 1] - s, c = cnt ? cnt[k] : 1u;                     \
            ops += n * c;                                                                                  \
            while (c--) KERN(sb, ix + s, dl + s, w + s, n);                                                \
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

typedef uint32_t (*rows_simple_fn)(uint32_t *, const uint16_t *, const uint8_t *, uint32_t, const uint32_t *,
                                   const void *, const void *);
typedef uint32_t (*rows_dense_fn)(uint32_t *, const uint16_t *, const uint8_t *, uint32_t, uint32_t, const void *);
typedef uint32_t (*rows_seg_fn)(uint32_t *const *, const uint16_t *, const uint8_t *, uint32_t, const uint32_t *,
                                const uint32_t *, const snn_img_seg_t *, const void *, const void *);

/* [idx16][wkind] */
static const rows_simple_fn rows_simple[2][4] = {{rows_i8_u8, rows_i8_n8, rows_i8_s8, rows_i8_s16},
                                                 {rows_i16_u8, rows_i16_n8, rows_i16_s8, rows_i16_s16}};
static const rows_dense_fn rows_dense[4] = {rows_d_u8, rows_d_n8, rows_d_s8, rows_d_s16};
static const rows_seg_fn rows_seg[2][4] = {{seg_i8_u8, seg_i8_n8, seg_i8_s8, seg_i8_s16},
                                           {seg_i16_u8, seg_i16_n8, seg_i16_s8, seg_i16_s16}};

SNN_DELIVER void snn_deliver_pop(snn_t *e, uint32_t p) {
    const snn_img_pop_t *q = &e->pops[p];
    const uint32_t ns = e->spike_n[p];
    const uint16_t *list = e->spike_idx + e->spike_off[p];
    /* counts only when some input this step came more than once: binary rows have no count loop */
    const uint8_t *cnt = (q->kind == SNN_POP_INPUT && e->graded) ? e->spike_cnt + e->spike_off[p] : NULL;
    const uint8_t *img = e->img;
    uint32_t gi, ops = 0;
    if (ns == 0) return;
    for (gi = q->first_group; gi < (uint32_t)q->first_group + q->n_groups; gi++) {
        const snn_img_group_t *g = &e->groups[gi];
        const snn_img_ring_t *rg = &e->rings[g->ring];
        const uint32_t n_post = e->pops[rg->post].n;
        uint32_t *mem = e->ring_mem + e->ring_base[g->ring];
        const uint32_t idx16 = (g->flags & SNN_G_IDX16) ? 1u : 0u;
        if (g->flags & (SNN_G_SEGMENTED | SNN_G_DELAYS)) {
            uint32_t *slot_base[256];
            uint32_t d, slot = (e->t + 1u) % rg->slots;
            for (d = 0; d < rg->slots; d++) {
                slot_base[d] = mem + slot * n_post;
                if (++slot == rg->slots) slot = 0;
            }
            if (g->flags & SNN_G_DELAYS) {
                const uint32_t *rp = (const uint32_t *)(const void *)(img + g->row_off);
                const uint8_t *dl = img + g->seg_off;
                if (idx16)
                    ops += (g->wkind == SNN_W_U8 ? dly_i16_u8 : dly_i16_s8)(slot_base, list, cnt, ns, rp, dl,
                                                                             img + g->idx_off, img + g->w_off);
                else
                    ops += (g->wkind == SNN_W_U8 ? dly_i8_u8 : dly_i8_s8)(slot_base, list, cnt, ns, rp, dl,
                                                                           img + g->idx_off, img + g->w_off);
                continue;
            }
            ops += rows_seg[idx16][g->wkind](slot_base, list, cnt, ns, (const uint32_t *)(const void *)(img + g->row_off),
                                             (const uint32_t *)(const void *)(img + g->segptr_off),
                                             (const snn_img_seg_t *)(const void *)(img + g->seg_off),
                                             img + g->idx_off, img + g->w_off);
        } else {
            uint32_t *base = mem + ((e->t + 1u + g->delay) % rg->slots) * n_post;
            if (g->flags & SNN_G_DENSE)
                ops += rows_dense[g->wkind](base, list, cnt, ns, n_post, img + g->w_off);
            else
                ops += rows_simple[idx16][g->wkind](base, list, cnt, ns,
                                                    (const uint32_t *)(const void *)(img + g->row_off),
                                                    img + g->idx_off, img + g->w_off);
        }
    }
    e->stats.synapse_ops += ops;
}

void snn_step(snn_t *e) {
    uint32_t p;
    for (p = 0; p < e->hdr->n_pops; p++)
        if (e->pops[p].kind == SNN_POP_LIF) snn_update_pop(e, p);
    for (p = 0; p < e->hdr->n_pops; p++) snn_deliver_pop(e, p);
    snn_clear_inputs(e);
    e->t++;
    e->stats.steps++;
}
