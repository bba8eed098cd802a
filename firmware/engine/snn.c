/* neurocc SNN engine (see snn.h). The arithmetic follows compiler/ir/lif.py LifNeurons.step exactly,
 * with the widths of the image header (decay_bits, state_bits, activation_shift, threshold_shift):
 *
 *   per projection and delay d: acc = sum of weights of spiking inputs, shifted by the weight exponent
 *   (left, or arithmetic right = floor), lands at t+1+d;
 *   u = wrap_state(int32(decay(u, du+1) + (a_in << activation_shift)));  v = clip(decay(v, dv) + u + bias);
 *   spike if v > vth << threshold_shift (stored shifted).
 *
 * Synaptic sums land unshifted in rings; the shift is applied when a population reads them. A left
 * shift is linear mod 2^32, so projections with equal non-negative shifts into one population share a
 * ring; a right shift (floor) is not, so the packer gives each (projection, delay) with a negative
 * shift its own ring and every slot of it holds exactly one step's sum, as the reference floors it.
 *
 * Pulled rings (slots == 0) hold delay-0 arrivals: just before a population updates, its pulled groups
 * scatter the spikes their pre populations sent in the previous step into the one shared scratch. The
 * image's update order guarantees those spikes are still there (each pre population is an input, the
 * population itself, or one updated later), so one scratch the size of the largest population replaces
 * a ring per population: a feedforward network needs 4 bytes per neuron (v) plus one scratch, not 12.
 */
#include "snn.h"

#include <stddef.h>

#if defined(__GNUC__)
#define SNN_INLINE static inline __attribute__((always_inline))
#define SNN_NOINLINE __attribute__((noinline))
#define SNN_FALLTHROUGH __attribute__((fallthrough))
#define SNN_CTZ(x) ((uint32_t)__builtin_ctz(x))
#else
#define SNN_INLINE static inline
#define SNN_NOINLINE
#define SNN_FALLTHROUGH
static uint32_t snn_ctz(uint32_t x) {
    uint32_t n = 0;
    while (!(x & 1u)) { x >>= 1; n++; }
    return n;
}
#define SNN_CTZ(x) snn_ctz(x)
#endif
#if defined(__GNUC__) && !defined(__clang__)
#define SNN_COLD __attribute__((optimize("Os"))) /* validation and setup: once per load, code size matters */
#else
#define SNN_COLD
#endif
#if defined(__GNUC__) && defined(__ELF__)
/* the hot paths in sections of their own: the bench counts instructions inside their bounds */
#define SNN_DELIVER __attribute__((section(".text.snn_deliver")))
#define SNN_UPDATE __attribute__((section(".text.snn_update")))
#else
#define SNN_DELIVER
#define SNN_UPDATE
#endif

#define SNN_CHUNK 64u /* spikes decoded from a bitmap or a count array per kernel call */

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

static uint32_t bit_words(uint32_t n) { return (n + 31u) >> 5; }

/* ---- validation: every bound the hot loops rely on is checked here, once ---- */

typedef struct {
    uint32_t n_u, bit_words, in_bytes, in_words;
} snn_sizes_t;

static uint32_t arena_layout(const snn_img_header_t *h, const snn_sizes_t *z) {
    uint32_t a = 0;
    a += 4u * h->n_state;                     /* v */
    a += 4u * z->n_u;                         /* u */
    a += 4u * h->ring_words;                  /* pushed rings */
    a += 4u * h->n_rings;                     /* ring_base */
    a += 4u * h->scratch_words;               /* scratch */
    a += 4u * h->n_pops * 3u;                 /* spike_n, bit_off, cnt_off */
    a += 4u;                                  /* scratch_dirty */
    a += 4u * z->bit_words;                   /* LIF spike bitmaps */
    a += 2u * 4u * z->in_words;               /* input bitmaps: this step's and the last one's */
    a += 2u * z->in_bytes;                    /* input counts: the same two */
    return a;
}

/* One axis of a conv (snn_img_conv_t): kernel k, stride s, padding p, dilation d; pool window pk, stride
 * ps, padding pp; np pooled and no output positions. */
typedef struct {
    uint32_t n, k, s, p, d, pk, ps, pp, np, no;
} snn_axis_t;

/* The taps (i, out) input position y reaches, in table order (pooled position, then i); returns how
 * many were written to tap[] (at most max). */
static uint32_t axis_taps(const snn_axis_t *a, uint32_t y, uint32_t *tap, uint32_t *out, uint32_t max) {
    /* pooled positions whose window [Y * ps - pp, Y * ps - pp + pk) holds y */
    uint32_t top = y + a->pp, lo = top + 1u > a->pk ? (top + 1u - a->pk + a->ps - 1u) / a->ps : 0u;
    uint32_t hi = top / a->ps, yy, i, m = 0;
    for (yy = lo; yy <= hi && yy < a->np; yy++) {
        for (i = 0; i < a->k && (uint64_t)i * a->d <= (uint64_t)yy + a->p; i++) {
            uint32_t num = yy + a->p - i * a->d;
            if (num % a->s || num / a->s >= a->no) continue;
            if (m == max) return max + 1u;
            tap[m] = i;
            out[m++] = num / a->s;
        }
    }
    return m;
}

/* Where kernel row or column j (of kdim) is stored: grouped by j mod m (m = that axis's stride), each
 * group in descending j, so the taps j, j + m that one input position reaches are adjacent
 * (snn_image.h). */
static uint32_t tap_order(uint32_t j, uint32_t kdim, uint32_t m) {
    uint32_t q, n = 0;
    for (q = 0; q < kdim; q++)
        if (q % m < j % m || (q % m == j % m && q > j)) n++;
    return n;
}

/* The table at `off` (uint16 ptr[n + 1], padded, then uint16 triples) equals what the geometry gives:
 * per input position, runs {tap_order(j_last) * wmul, out_last * bmul, taps * nmul}, consecutive taps
 * merged when `merge` and j rises by the stride while out falls by 1. */
SNN_COLD static int conv_table_ok(const uint8_t *img, uint32_t size, uint32_t off, const snn_axis_t *a,
                                  uint32_t wmul, uint32_t bmul, uint32_t nmul, int merge) {
    const uint16_t *ptr, *ent;
    uint32_t tap[64], out[64], y, m = 0;
    if (!in_image(size, off, 2ull * (a->n + 1u), 4)) return SNN_E_SIZE;
    ptr = (const uint16_t *)(const void *)(img + off);
    if (ptr[0] != 0) return SNN_E_FORMAT;
    if (!in_image(size, off + align4(2u * (a->n + 1u)), 6ull * ptr[a->n], 2)) return SNN_E_SIZE;
    ent = (const uint16_t *)(const void *)(img + off + align4(2u * (a->n + 1u)));
    for (y = 0; y < a->n; y++) {
        uint32_t nt = axis_taps(a, y, tap, out, 64u), q;
        if (nt > 64u || ptr[y + 1] < ptr[y]) return SNN_E_FORMAT; /* more taps than the engine checks */
        for (q = 0; q < nt; q++) {
            const uint16_t *e = ent + 3u * m;
            uint32_t last = q;
            while (merge && last + 1u < nt && tap[last + 1u] == tap[last] + a->s && out[last + 1u] + 1u == out[last])
                last++;
            if (m >= ptr[y + 1] || e[0] != tap_order(tap[last], a->k, a->s) * wmul || e[1] != out[last] * bmul ||
                e[2] != (last - q + 1u) * nmul)
                return SNN_E_FORMAT;
            q = last;
            m++;
        }
        if (m != ptr[y + 1]) return SNN_E_FORMAT;
    }
    return SNN_OK;
}

SNN_COLD static int check_conv(const uint8_t *img, uint32_t size, const snn_img_group_t *g, uint32_t n_pre,
                               const snn_img_pop_t *post) {
    const snn_img_conv_t *c;
    snn_axis_t rows, cols;
    uint32_t opg, cin_g, hwc;
    int rc;
    if (g->flags != SNN_G_CONV || g->delay != 0 || g->idx_off || g->segptr_off || g->seg_off) return SNN_E_FORMAT;
    if (g->wkind != SNN_W_S8 && g->wkind != SNN_W_S16) return SNN_E_FORMAT;
    if (!in_image(size, g->row_off, sizeof(snn_img_conv_t), 4)) return SNN_E_SIZE;
    c = (const snn_img_conv_t *)(const void *)(img + g->row_off);
    if ((uint32_t)c->c_in * c->h_in * c->w_in != n_pre || (uint32_t)c->c_out * c->h_out * c->w_out != post->n)
        return SNN_E_FORMAT;
    if (!c->groups || c->c_in % c->groups || c->c_out % c->groups || !c->kh || !c->kw || !c->sy || !c->sx ||
        !c->dy || !c->dx || !c->pkh || !c->pkw || !c->psy || !c->psx || !c->hp || !c->wp)
        return SNN_E_FORMAT;
    hwc = (post->flags & SNN_POPF_HWC) ? 1u : 0u;
    if (c->layout != hwc || c->reserved[0] || c->reserved[1] || c->reserved[2]) return SNN_E_FORMAT;
    opg = c->c_out / c->groups;
    cin_g = c->c_in / c->groups;
    if ((uint64_t)c->c_out * cin_g * c->kh * c->kw != g->n_syn || (uint64_t)c->kh * c->kw * opg > 65535u)
        return SNN_E_FORMAT;
    if (!in_image(size, g->w_off, (uint64_t)g->n_syn * wsize(g->wkind), wsize(g->wkind))) return SNN_E_SIZE;
    rows.n = c->h_in, rows.k = c->kh, rows.s = c->sy, rows.p = c->py, rows.d = c->dy;
    rows.pk = c->pkh, rows.ps = c->psy, rows.pp = c->ppy, rows.np = c->hp, rows.no = c->h_out;
    cols.n = c->w_in, cols.k = c->kw, cols.s = c->sx, cols.p = c->px, cols.d = c->dx;
    cols.pk = c->pkw, cols.ps = c->psx, cols.pp = c->ppx, cols.np = c->wp, cols.no = c->w_out;
    /* kernel rows always merge (their weights and sums are a fixed stride apart); columns where the
     * sums are adjacent too */
    rc = conv_table_ok(img, size, c->rows_off, &rows, (uint32_t)c->kw * opg, (uint32_t)c->w_out * (hwc ? c->c_out : 1u),
                       1u, 1);
    if (rc != SNN_OK) return rc;
    return conv_table_ok(img, size, c->cols_off, &cols, opg, hwc ? c->c_out : 1u, opg, hwc && c->groups == 1u);
}

/* slots: the ring's length, 1 for a pulled group (its spikes land in the scratch, delay 0) */
SNN_COLD static int check_group(const uint8_t *img, uint32_t size, const snn_img_pop_t *pops, const snn_img_group_t *g,
                       uint32_t post, uint32_t slots) {
    uint32_t n_pre, n_post, j, k, ws;
    if (g->wkind > SNN_W_S16) return SNN_E_FORMAT;
    if (g->flags & ~(uint8_t)(SNN_G_IDX16 | SNN_G_SEGMENTED | SNN_G_DENSE | SNN_G_DELAYS | SNN_G_CONV))
        return SNN_E_FORMAT;
    n_pre = pops[g->pre].n;
    n_post = pops[post].n;
    if (g->flags & SNN_G_CONV) return check_conv(img, size, g, n_pre, &pops[post]);
    if ((g->flags & SNN_G_DELAYS) && ((g->flags & (SNN_G_SEGMENTED | SNN_G_DENSE)) || g->wkind == SNN_W_N8 ||
                                      g->wkind == SNN_W_S16))
        return SNN_E_FORMAT;
    ws = wsize(g->wkind);
    if (!in_image(size, g->w_off, (uint64_t)g->n_syn * ws, ws)) return SNN_E_SIZE;
    if (g->flags & SNN_G_DENSE) {
        if (g->flags != SNN_G_DENSE || (uint64_t)n_pre * n_post != g->n_syn || g->delay >= slots)
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
            if (img[g->seg_off + k] >= slots) return SNN_E_FORMAT;
    } else if (!(g->flags & SNN_G_SEGMENTED) && g->delay >= slots) {
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
                if (seg[k].delay >= slots) return SNN_E_FORMAT;
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

/* position of LIF population p in the update order (validated: exactly once) */
SNN_COLD static uint32_t order_pos(const uint16_t *order, uint32_t n_lif, uint32_t p) {
    uint32_t k;
    for (k = 0; k < n_lif; k++)
        if (order[k] == p) return k;
    return n_lif;
}

SNN_COLD static int check_pops(const snn_img_header_t *h, const uint8_t *img, uint32_t size, const snn_img_pop_t *pops,
                      const snn_img_ring_t *rings, uint32_t n_push, snn_sizes_t *z, uint32_t *n_lif,
                      uint32_t *max_pop) {
    const uint32_t dmax = (1u << h->decay_bits) - 1u;
    uint32_t p, r, gi, n_state = 0, n_neurons = 0, groups = 0, n_rings = 0;
    z->n_u = z->bit_words = z->in_bytes = z->in_words = 0;
    *n_lif = *max_pop = 0;
    for (p = 0; p < h->n_pops; p++) {
        const snn_img_pop_t *q = &pops[p];
        if (q->kind > SNN_POP_LIF || q->n == 0) return SNN_E_FORMAT;
        if (q->flags & ~(uint8_t)(SNN_POPF_OUTPUT | SNN_POPF_BIAS | SNN_POPF_U | SNN_POPF_HWC)) return SNN_E_FORMAT;
        /* channel-last arrivals: one ring, the pulled one (its groups are checked with the rings) */
        if ((q->flags & SNN_POPF_HWC) && (q->n_rings != 1u || rings[q->first_ring].slots != 0)) return SNN_E_FORMAT;
        if ((uint32_t)q->first_group + q->n_groups > n_push) return SNN_E_FORMAT;
        if ((uint32_t)q->first_ring + q->n_rings > h->n_rings) return SNN_E_FORMAT;
        for (gi = q->first_group; gi < (uint32_t)q->first_group + q->n_groups; gi++)
            if (((const snn_img_group_t *)(const void *)(img + h->groups_off))[gi].pre != p) return SNN_E_FORMAT;
        for (r = q->first_ring; r < (uint32_t)q->first_ring + q->n_rings; r++)
            if (rings[r].post != p || (rings[r].slots == 0 && r != q->first_ring)) return SNN_E_FORMAT;
        groups += q->n_groups;
        n_rings += q->n_rings;
        n_neurons += q->n;
        if (q->n > *max_pop) *max_pop = q->n;
        if (q->kind == SNN_POP_INPUT) {
            if (q->n_rings || q->du || q->dv || q->vth_shifted || q->bias_off || q->v_base || q->u_base ||
                (q->flags & (SNN_POPF_BIAS | SNN_POPF_U | SNN_POPF_HWC)))
                return SNN_E_FORMAT;
            z->in_bytes += align4(q->n);
            z->in_words += bit_words(q->n);
            continue;
        }
        if (q->du > dmax || q->dv > dmax || q->vth_shifted < 0 || q->v_base != n_state) return SNN_E_FORMAT;
        if ((uint32_t)q->vth_shifted & ((1u << h->threshold_shift) - 1u)) return SNN_E_FORMAT; /* not vth << shift */
        /* u is stored exactly when it keeps state: decay(u, du + 1) is 0 for every u when du + 1 = 2^db */
        if (!(q->flags & SNN_POPF_U) != (q->du == dmax)) return SNN_E_FORMAT;
        if (q->flags & SNN_POPF_U) {
            if (q->u_base != z->n_u) return SNN_E_FORMAT;
            z->n_u += q->n;
        } else if (q->u_base) {
            return SNN_E_FORMAT;
        }
        if (q->flags & SNN_POPF_BIAS) {
            const int32_t *b;
            uint32_t i;
            if (!in_image(size, q->bias_off, 4ull * q->n, 4)) return SNN_E_SIZE;
            b = (const int32_t *)(const void *)(img + q->bias_off);
            for (i = 0; i < q->n; i++)
                if (b[i] > (1 << 28) || b[i] < -(1 << 28)) return SNN_E_FORMAT;
        } else if (q->bias_off) {
            return SNN_E_FORMAT;
        }
        n_state += q->n;
        z->bit_words += bit_words(q->n);
        (*n_lif)++;
    }
    /* every pushed group is out of some population, every ring into one */
    if (groups != n_push || n_rings != h->n_rings || n_state != h->n_state || n_neurons != h->n_neurons)
        return SNN_E_FORMAT;
    return SNN_OK;
}

SNN_COLD int snn_validate(const uint8_t *img, uint32_t size, uint32_t board_id, uint32_t *arena_need) {
    const snn_img_header_t *h = (const snn_img_header_t *)(const void *)img;
    const snn_img_pop_t *pops;
    const snn_img_ring_t *rings;
    const snn_img_group_t *groups;
    const uint16_t *order;
    snn_sizes_t z;
    uint32_t r, gi, k, n_push, n_lif, max_pop, max_pull = 0, need, pulled = 0;
    uint64_t ring_words = 0;
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
    if (h->reserved != 0 || h->flags != 0 || h->n_pops == 0) return SNN_E_FORMAT;
    if (!in_image(size, h->pops_off, (uint64_t)h->n_pops * sizeof(snn_img_pop_t), 4) ||
        !in_image(size, h->rings_off, (uint64_t)h->n_rings * sizeof(snn_img_ring_t), 4) ||
        !in_image(size, h->groups_off, (uint64_t)h->n_groups * sizeof(snn_img_group_t), 4))
        return SNN_E_SIZE;
    pops = (const snn_img_pop_t *)(const void *)(img + h->pops_off);
    rings = (const snn_img_ring_t *)(const void *)(img + h->rings_off);
    groups = (const snn_img_group_t *)(const void *)(img + h->groups_off);
    /* rings: post, shift; pushed groups come first, then the pulled ones */
    for (r = 0; r < h->n_rings; r++) {
        if (rings[r].post >= h->n_pops || pops[rings[r].post].kind != SNN_POP_LIF) return SNN_E_FORMAT;
        if (rings[r].shift > 31 || rings[r].shift < -31) return SNN_E_FORMAT;
        if (rings[r].slots) {
            if (rings[r].first_group || rings[r].n_groups) return SNN_E_FORMAT;
            ring_words += (uint64_t)rings[r].slots * pops[rings[r].post].n;
        }
    }
    for (n_push = 0; n_push < h->n_groups; n_push++)
        if (groups[n_push].ring >= h->n_rings || rings[groups[n_push].ring].slots == 0) break;
    rc = check_pops(h, img, size, pops, rings, n_push, &z, &n_lif, &max_pop);
    if (rc != SNN_OK) return rc;
    if (ring_words != h->ring_words) return SNN_E_FORMAT;
    /* the update order: every LIF population exactly once */
    if (!in_image(size, h->order_off, 2ull * n_lif, 4)) return SNN_E_SIZE;
    order = (const uint16_t *)(const void *)(img + h->order_off);
    for (k = 0; k < n_lif; k++) {
        if (order[k] >= h->n_pops || pops[order[k]].kind != SNN_POP_LIF || order_pos(order, k, order[k]) != k)
            return SNN_E_FORMAT;
    }
    for (r = 0; r < h->n_rings; r++) {
        const snn_img_ring_t *rg = &rings[r];
        if (rg->slots) continue;
        /* pulled: its groups contiguous in the pulled part, each from a population whose spikes of the
         * previous step are still there when this one updates */
        if (rg->first_group < n_push || !rg->n_groups || (uint32_t)rg->first_group + rg->n_groups > h->n_groups)
            return SNN_E_FORMAT;
        for (gi = rg->first_group; gi < (uint32_t)rg->first_group + rg->n_groups; gi++) {
            const uint32_t pre = groups[gi].pre;
            if (groups[gi].ring != r || pre >= h->n_pops) return SNN_E_FORMAT;
            if (pops[rg->post].flags & SNN_POPF_HWC) {
                /* convs only, one channel count (the update reads the scratch as [n / C][C]) */
                const snn_img_group_t *g0 = &groups[rg->first_group];
                if (!(groups[gi].flags & SNN_G_CONV) || !(g0->flags & SNN_G_CONV) ||
                    !in_image(size, groups[gi].row_off, sizeof(snn_img_conv_t), 4) ||
                    !in_image(size, g0->row_off, sizeof(snn_img_conv_t), 4) ||
                    ((const snn_img_conv_t *)(const void *)(img + groups[gi].row_off))->c_out !=
                        ((const snn_img_conv_t *)(const void *)(img + g0->row_off))->c_out)
                    return SNN_E_FORMAT;
            }
            if (pops[pre].kind == SNN_POP_LIF && pre != rg->post &&
                order_pos(order, n_lif, pre) <= order_pos(order, n_lif, rg->post))
                return SNN_E_FORMAT;
        }
        pulled += rg->n_groups;
        if (pops[rg->post].n > max_pull) max_pull = pops[rg->post].n;
    }
    if (n_push + pulled != h->n_groups) return SNN_E_FORMAT;
    for (gi = 0; gi < h->n_groups; gi++) {
        const snn_img_group_t *g = &groups[gi];
        if (g->pre >= h->n_pops || g->ring >= h->n_rings) return SNN_E_FORMAT;
        rc = check_group(img, size, pops, g, rings[g->ring].post, rings[g->ring].slots ? rings[g->ring].slots : 1u);
        if (rc != SNN_OK) return rc;
    }
    /* the scratch holds the largest pulled population, and between steps any population's spike list */
    if (h->scratch_words < max_pull || h->scratch_words < (max_pop + 1u) / 2u) return SNN_E_FORMAT;
    if (z.n_u != h->n_u) return SNN_E_FORMAT;
    need = arena_layout(h, &z);
    if (need != h->arena_bytes) return SNN_E_FORMAT;
    if (arena_need) *arena_need = need;
    return SNN_OK;
}

SNN_COLD int snn_open(snn_t *e, const uint8_t *img, uint32_t size, uint32_t board_id, void *arena, uint32_t arena_size) {
    uint32_t need = 0, r, p, words = 0, bits = 0, in_words = 0, cnt = 0, n_lif = 0, in_bytes = 0;
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
    e->order = (const uint16_t *)(const void *)(img + h->order_off);
    for (p = 0; p < h->n_pops; p++) {
        if (e->pops[p].kind == SNN_POP_LIF) {
            n_lif++;
            bits += bit_words(e->pops[p].n);
        } else {
            in_bytes += align4(e->pops[p].n);
            in_words += bit_words(e->pops[p].n);
        }
    }
    e->n_lif = n_lif;
    e->in_bytes = in_bytes;
    e->in_words = in_words;
    e->v = (int32_t *)(void *)a;
    a += 4u * h->n_state;
    e->u = (int32_t *)(void *)a;
    a += 4u * h->n_u;
    e->ring_mem = (uint32_t *)(void *)a;
    a += 4u * h->ring_words;
    e->ring_base = (uint32_t *)(void *)a;
    a += 4u * h->n_rings;
    e->scratch = (uint32_t *)(void *)a;
    a += 4u * h->scratch_words;
    e->spike_n = (uint32_t *)(void *)a;
    a += 4u * h->n_pops;
    e->bit_off = (uint32_t *)(void *)a;
    a += 4u * h->n_pops;
    e->cnt_off = (uint32_t *)(void *)a;
    a += 4u * h->n_pops;
    e->scratch_dirty = (uint32_t *)(void *)a;
    a += 4u;
    e->bits = (uint32_t *)(void *)a;
    a += 4u * bits;
    e->in_now.bits = (uint32_t *)(void *)a;
    a += 4u * in_words;
    e->in_prev.bits = (uint32_t *)(void *)a;
    a += 4u * in_words;
    e->in_now.cnt = a;
    a += in_bytes;
    e->in_prev.cnt = a;
    for (r = 0; r < h->n_rings; r++) {
        e->ring_base[r] = words;
        words += (uint32_t)e->rings[r].slots * e->pops[e->rings[r].post].n;
    }
    for (p = 0, bits = 0, in_words = 0; p < h->n_pops; p++) {
        if (e->pops[p].kind == SNN_POP_LIF) {
            e->bit_off[p] = bits;
            e->cnt_off[p] = 0;
            bits += bit_words(e->pops[p].n);
        } else {
            e->bit_off[p] = in_words;
            e->cnt_off[p] = cnt;
            in_words += bit_words(e->pops[p].n);
            cnt += align4(e->pops[p].n);
        }
    }
    snn_reset(e);
    return SNN_OK;
}

static void zero_words(uint32_t *w, uint32_t n) {
    while (n--) *w++ = 0;
}

SNN_COLD static void clear_inputs(const snn_t *e, snn_inputs_t *in) {
    zero_words(in->bits, e->in_words);
    zero_words((uint32_t *)(void *)in->cnt, e->in_bytes / 4u);
    in->graded = 0;
}

void snn_reset(snn_t *e) {
    const snn_img_header_t *h = e->hdr;
    uint32_t p;
    zero_words((uint32_t *)(void *)e->v, h->n_state);
    zero_words((uint32_t *)(void *)e->u, h->n_u);
    zero_words(e->ring_mem, h->ring_words);
    zero_words(e->scratch, h->scratch_words);
    zero_words(e->spike_n, h->n_pops);
    *e->scratch_dirty = 0;
    for (p = 0; p < h->n_pops; p++)
        if (e->pops[p].kind == SNN_POP_LIF) zero_words(e->bits + e->bit_off[p], bit_words(e->pops[p].n));
    clear_inputs(e, &e->in_now);
    clear_inputs(e, &e->in_prev);
    e->t = 0;
    e->stats.steps = e->stats.synapse_ops = e->stats.neuron_updates = 0;
    e->stats.spikes_in = e->stats.spikes_out = 0;
}

void snn_clear_inputs(snn_t *e) {
    uint32_t p;
    for (p = 0; p < e->hdr->n_pops; p++) {
        if (e->pops[p].kind != SNN_POP_INPUT || !e->spike_n[p]) continue;
        zero_words(e->in_now.bits + e->bit_off[p], bit_words(e->pops[p].n));
        zero_words((uint32_t *)(void *)(e->in_now.cnt + e->cnt_off[p]), align4(e->pops[p].n) / 4u);
        e->spike_n[p] = 0;
    }
    e->in_now.graded = 0;
}

int snn_input(snn_t *e, uint32_t pop, uint32_t neuron, uint32_t count) {
    uint8_t *c;
    if (pop >= e->hdr->n_pops || e->pops[pop].kind != SNN_POP_INPUT) return SNN_E_INPUT;
    if (neuron >= e->pops[pop].n || count == 0 || count > 255u) return SNN_E_INPUT;
    c = e->in_now.cnt + e->cnt_off[pop] + neuron;
    if (*c) return SNN_E_INPUT; /* once per step */
    *c = (uint8_t)count;
    e->in_now.bits[e->bit_off[pop] + (neuron >> 5)] |= 1u << (neuron & 31u);
    e->in_now.graded |= count > 1u;
    e->spike_n[pop]++;
    e->stats.spikes_in += count;
    return SNN_OK;
}

/* ---- spike sources: a LIF population's bitmap or an input's counts, decoded in chunks ---- */

typedef struct {
    const uint32_t *bits; /* the population's bitmap words */
    const uint8_t *cnt;   /* input: its counts (zero padded to 4 bytes), when graded; else NULL */
    uint32_t end;         /* words (bitmap) or bytes (counts) */
    uint32_t pos;         /* next word or byte */
    uint32_t pending;     /* bitmap: bits of word pos - 1 not yet taken */
} snn_source_t;

/* a LIF population's bitmap, or an input's spikes of `in`: its bitmap if every count is 1, else its counts */
static void source_init(const snn_t *e, uint32_t p, const snn_inputs_t *in, snn_source_t *s) {
    const snn_img_pop_t *q = &e->pops[p];
    s->pos = 0;
    s->pending = 0;
    s->cnt = NULL;
    s->end = bit_words(q->n);
    if (q->kind == SNN_POP_LIF) {
        s->bits = e->bits + e->bit_off[p];
    } else {
        s->bits = in->bits + e->bit_off[p];
        if (in->graded) {
            s->cnt = in->cnt + e->cnt_off[p];
            s->end = align4(q->n);
        }
    }
}

/* Up to SNN_CHUNK spikes, ascending; *graded = some count > 1 (cnt filled from counts only). */
SNN_INLINE uint32_t source_next(snn_source_t *s, uint16_t *idx, uint8_t *cnt, uint32_t *graded) {
    uint32_t n = 0;
    *graded = 0;
    if (!s->cnt) {
        uint32_t w = s->pending, k = s->pos;
        while (n < SNN_CHUNK) {
            if (!w) {
                if (k == s->end) break;
                w = s->bits[k++];
                continue;
            }
            idx[n++] = (uint16_t)(((k - 1u) << 5) + SNN_CTZ(w));
            w &= w - 1u;
        }
        s->pending = w;
        s->pos = k;
        return n;
    }
    /* graded inputs (rare): the counts, byte by byte, whole words at a time */
    while (n + 4u <= SNN_CHUNK && s->pos < s->end) {
        const uint8_t *c = s->cnt + s->pos;
        uint32_t k;
        for (k = 0; k < 4u; k++) {
            if (!c[k]) continue;
            idx[n] = (uint16_t)(s->pos + k);
            cnt[n] = c[k];
            *graded |= c[k] > 1u;
            n++;
        }
        s->pos += 4u;
    }
    return n;
}

const uint16_t *snn_spikes(const snn_t *e, uint32_t pop, uint32_t *n) {
    uint16_t *out = (uint16_t *)(void *)e->scratch;
    uint8_t cnt[SNN_CHUNK];
    snn_source_t s;
    uint32_t k = 0, m, graded;
    /* after a step the bitmaps hold its LIF spikes and in_prev its inputs */
    source_init(e, pop, &e->in_prev, &s);
    while ((m = source_next(&s, out + k, cnt, &graded)) != 0) k += m;
    if ((k + 1u) / 2u > *e->scratch_dirty) *e->scratch_dirty = (k + 1u) / 2u;
    *n = k;
    return out;
}

/* ---- neuron update ---- */

/* One population's neurons: acc (the summed, shifted arrivals; cleared as read), u or none. Neuron
 * (c, p) of a (C, n / C) population reads acc[p * C + c]: C = 1 is the population's own order, C > 1 a
 * channel-last scratch (SNN_POPF_HWC). */
SNN_INLINE uint32_t update_loop(snn_t *e, const snn_img_pop_t *q, uint32_t *acc, uint32_t cstep, int32_t *u,
                                uint32_t *bits, const int has_u, const int hwc) {
    const uint32_t n = q->n;
    int32_t *v = e->v + q->v_base;
    const int32_t *bias = (q->flags & SNN_POPF_BIAS) ? (const int32_t *)(const void *)(e->img + q->bias_off) : NULL;
    /* the header's widths; validated: 1 <= db <= 16, du, dv < 2^db, act <= 31 */
    const uint32_t db = e->hdr->decay_bits, hi_shift = 32u - db, act = e->hdr->activation_shift;
    const uint32_t fu = (1u << db) - ((uint32_t)q->du + 1u), fv = (1u << db) - (uint32_t)q->dv;
    const int32_t vth = q->vth_shifted;
    const int32_t smax = (int32_t)1 << (e->hdr->state_bits - 1), vmax = smax - 1;
    const uint32_t plane = n / cstep;
    uint32_t i0, ns = 0, left = plane, *pa = acc, *col = acc;
    for (i0 = 0; i0 < n; i0 += 32u) {
        const uint32_t i1 = n - i0 < 32u ? n : i0 + 32u;
        uint32_t i, word = 0;
        for (i = i0; i < i1; i++) {
            const uint32_t a = hwc ? *pa : acc[i];
            int32_t c, w, s, x;
            if (hwc) {
                *pa = 0;
                if (--left) {
                    pa += cstep;
                } else {
                    left = plane;
                    pa = ++col;
                }
            } else {
                acc[i] = 0;
            }
            /* u: int32 arithmetic (the uint32 shift and sum wrap mod 2^32, as the reference's wrap to 32
             * bits), then Lava's literal state wrap (one correction each way). Without stored u,
             * decay(u, du + 1) is 0 (du + 1 = 2^db). */
            c = u2i((has_u ? (uint32_t)decay(u[i], fu, db, hi_shift) : 0u) + (a << act));
            w = c;
            if (c > smax) w = u2i((uint32_t)c - 2u * (uint32_t)smax);
            if (w <= -smax) w = u2i((uint32_t)c + 2u * (uint32_t)smax);
            if (has_u) u[i] = w;
            /* v: |decay(v) + bias| < 2^29, so clamping u to +-2^30 first keeps the sum in int32 and
             * gives the same clipped result as the reference's int64 sum */
            s = decay(v[i], fv, db, hi_shift) + (bias ? bias[i] : 0);
            x = w > (1 << 30) ? (1 << 30) : (w < -(1 << 30) ? -(1 << 30) : w);
            x += s;
            if (x > vmax) x = vmax;
            if (x < -vmax) x = -vmax;
            if (x > vth) {
                x = 0;
                word |= 1u << (i - i0);
                ns++;
            }
            v[i] = x;
        }
        bits[i0 >> 5] = word;
    }
    return ns;
}

SNN_UPDATE void snn_update_pop(snn_t *e, uint32_t p) {
    const snn_img_pop_t *q = &e->pops[p];
    const uint32_t n = q->n;
    int32_t *u = (q->flags & SNN_POPF_U) ? e->u + q->u_base : NULL;
    uint32_t *bits = e->bits + e->bit_off[p];
    uint32_t *acc = e->scratch, cstep = 1, i, r, ns;
    /* arrivals: the pulled scratch or the first ring's slot t, plus every further ring's slot t; each
     * ring's raw sum is shifted by its own shift (no pass when there is one ring and no shift). Without
     * rings, the scratch: it is zero between populations. */
    if (q->n_rings) {
        const snn_img_ring_t *rg = &e->rings[q->first_ring];
        int32_t sh = rg->shift;
        acc = rg->slots ? e->ring_mem + e->ring_base[q->first_ring] + (e->t % rg->slots) * n : e->scratch;
        if (q->n_rings > 1u || sh) {
            for (i = 0; i < n; i++) acc[i] = arrive(acc[i], sh);
        }
        for (r = q->first_ring + 1u; r < (uint32_t)q->first_ring + q->n_rings; r++) {
            const snn_img_ring_t *o = &e->rings[r];
            uint32_t *src = e->ring_mem + e->ring_base[r] + (e->t % o->slots) * n;
            sh = o->shift;
            for (i = 0; i < n; i++) {
                acc[i] += arrive(src[i], sh);
                src[i] = 0;
            }
        }
    }
    if (q->flags & SNN_POPF_HWC) {
        /* channel-last: C is the c_out of its convs (validated: all the same) */
        const snn_img_group_t *g = &e->groups[e->rings[q->first_ring].first_group];
        cstep = ((const snn_img_conv_t *)(const void *)(e->img + g->row_off))->c_out;
    }
    if (cstep > 1u)
        ns = u ? update_loop(e, q, acc, cstep, u, bits, 1, 1) : update_loop(e, q, acc, cstep, NULL, bits, 0, 1);
    else
        ns = u ? update_loop(e, q, acc, 1u, u, bits, 1, 0) : update_loop(e, q, acc, 1u, NULL, bits, 0, 0);
    e->spike_n[p] = ns;
    e->stats.neuron_updates += n;
    e->stats.spikes_out += ns;
}

#include "snn_kernels.h" /* rows and convolutions: static, section .text.snn_deliver */

/* One list of binary spikes of group g into base (a ring slot or the scratch) or, for delays,
 * slot_base[d]. Returns the synapse cells processed. */
static SNN_DELIVER uint32_t deliver_list(const snn_t *e, const snn_img_group_t *g, uint32_t *base,
                                         uint32_t *const *slot_base, const uint16_t *list, uint32_t ns) {
    const uint8_t *img = e->img;
    const uint32_t idx16 = (g->flags & SNN_G_IDX16) ? 1u : 0u;
    const uint32_t *rp = (const uint32_t *)(const void *)(img + g->row_off);
    if (g->flags & SNN_G_CONV)
        return conv_spikes(base, img, (const snn_img_conv_t *)(const void *)(img + g->row_off), g->wkind,
                           img + g->w_off, list, ns);
    if (g->flags & SNN_G_DELAYS)
        return idx16 ? (g->wkind == SNN_W_U8 ? dly_i16_u8 : dly_i16_s8)(slot_base, list, ns, rp, img + g->seg_off,
                                                                       img + g->idx_off, img + g->w_off)
                     : (g->wkind == SNN_W_U8 ? dly_i8_u8 : dly_i8_s8)(slot_base, list, ns, rp, img + g->seg_off,
                                                                     img + g->idx_off, img + g->w_off);
    if (g->flags & SNN_G_SEGMENTED)
        return rows_seg[idx16][g->wkind](slot_base, list, ns, rp, (const uint32_t *)(const void *)(img + g->segptr_off),
                                         (const snn_img_seg_t *)(const void *)(img + g->seg_off), img + g->idx_off,
                                         img + g->w_off);
    if (g->flags & SNN_G_DENSE)
        return rows_dense[g->wkind](base, list, ns, e->pops[e->rings[g->ring].post].n, img + g->w_off);
    return rows_simple[idx16][g->wkind](base, list, ns, rp, img + g->idx_off, img + g->w_off);
}

/* One group: every spike of its pre population (from `counts` if an input). Binary chunks go to the
 * kernels whole; a chunk with a count > 1 (graded input) spike by spike, count times: the kernels have
 * no count loop. */
static SNN_DELIVER uint32_t deliver_group(const snn_t *e, const snn_img_group_t *g, const snn_inputs_t *in,
                                          uint32_t *base, uint32_t *const *slot_base) {
    uint16_t list[SNN_CHUNK];
    uint8_t cnt[SNN_CHUNK];
    snn_source_t src;
    uint32_t ns, graded, ops = 0, q, r;
    source_init(e, g->pre, in, &src);
    while ((ns = source_next(&src, list, cnt, &graded)) != 0) {
        if (!graded) {
            ops += deliver_list(e, g, base, slot_base, list, ns);
            continue;
        }
        for (q = 0; q < ns; q++)
            for (r = 0; r < cnt[q]; r++) ops += deliver_list(e, g, base, slot_base, list + q, 1u);
    }
    return ops;
}

/* Pulled groups into p: the spikes their pre populations sent last step (inputs: in_prev; LIF
 * populations not yet updated this step: their bitmaps), summed raw into the scratch. */
SNN_DELIVER void snn_pull_pop(snn_t *e, uint32_t p) {
    const snn_img_pop_t *q = &e->pops[p];
    const snn_img_ring_t *rg;
    uint32_t *slot0[1];
    uint32_t gi, ops = 0;
    if (!q->n_rings) return;
    rg = &e->rings[q->first_ring];
    if (rg->slots) return;
    slot0[0] = e->scratch;
    for (gi = rg->first_group; gi < (uint32_t)rg->first_group + rg->n_groups; gi++) {
        const snn_img_group_t *g = &e->groups[gi];
        if (e->spike_n[g->pre] || e->pops[g->pre].kind == SNN_POP_INPUT)
            ops += deliver_group(e, g, &e->in_prev, e->scratch, slot0);
    }
    e->stats.synapse_ops += ops;
}

/* Pushed groups out of p: this step's spikes to slot t+1+d of their rings. */
SNN_DELIVER void snn_deliver_pop(snn_t *e, uint32_t p) {
    const snn_img_pop_t *q = &e->pops[p];
    uint32_t gi, ops = 0;
    if (e->spike_n[p] == 0) return;
    for (gi = q->first_group; gi < (uint32_t)q->first_group + q->n_groups; gi++) {
        const snn_img_group_t *g = &e->groups[gi];
        const snn_img_ring_t *rg = &e->rings[g->ring];
        const uint32_t n_post = e->pops[rg->post].n;
        uint32_t *mem = e->ring_mem + e->ring_base[g->ring];
        uint32_t *slot_base[256];
        uint32_t *base = mem + ((e->t + 1u + g->delay) % rg->slots) * n_post;
        if (g->flags & (SNN_G_SEGMENTED | SNN_G_DELAYS)) {
            uint32_t d, slot = (e->t + 1u) % rg->slots;
            for (d = 0; d < rg->slots; d++) {
                slot_base[d] = mem + slot * n_post;
                if (++slot == rg->slots) slot = 0;
            }
        }
        ops += deliver_group(e, g, &e->in_now, base, slot_base);
    }
    e->stats.synapse_ops += ops;
}

void snn_step(snn_t *e) {
    uint32_t k, p, d = *e->scratch_dirty;
    snn_inputs_t prev;
    /* the scratch is zero between populations; only snn_spikes lists leave words behind */
    zero_words(e->scratch, d);
    *e->scratch_dirty = 0;
    for (k = 0; k < e->n_lif; k++) {
        p = e->order[k];
        snn_pull_pop(e, p);
        snn_update_pop(e, p);
    }
    for (p = 0; p < e->hdr->n_pops; p++) snn_deliver_pop(e, p);
    /* this step's inputs become the last step's (pulled next step); the coming step's start empty */
    prev = e->in_prev;
    e->in_prev = e->in_now;
    e->in_now = prev;
    clear_inputs(e, &e->in_now);
    for (p = 0; p < e->hdr->n_pops; p++)
        if (e->pops[p].kind == SNN_POP_INPUT) e->spike_n[p] = 0;
    e->t++;
    e->stats.steps++;
}
