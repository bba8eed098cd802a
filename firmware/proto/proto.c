/* Device side of the model protocol; see proto.h and docs/device-protocol.md. */
#include "proto.h"

#include <stddef.h>
#include <string.h>

static uint32_t rd32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static void wr32(uint8_t *b, uint32_t x) {
    b[0] = (uint8_t)x;
    b[1] = (uint8_t)(x >> 8);
    b[2] = (uint8_t)(x >> 16);
    b[3] = (uint8_t)(x >> 24);
}
static void wr16(uint8_t *b, uint32_t x) {
    b[0] = (uint8_t)x;
    b[1] = (uint8_t)(x >> 8);
}

/* unsigned LEB128 */
static uint32_t put_varint(uint8_t *b, uint32_t x) {
    uint32_t n = 0;
    while (x >= 0x80u) {
        b[n++] = (uint8_t)(x | 0x80u);
        x >>= 7;
    }
    b[n++] = (uint8_t)x;
    return n;
}
static uint32_t varint_len(uint32_t x) {
    uint32_t n = 1;
    while (x >= 0x80u) {
        x >>= 7;
        n++;
    }
    return n;
}
/* returns 0 on truncation or overlong encoding */
static int get_varint(const uint8_t **p, const uint8_t *end, uint32_t *out) {
    uint32_t x = 0, shift = 0;
    while (*p < end && shift < 35u) {
        uint8_t b = *(*p)++;
        x |= (uint32_t)(b & 0x7Fu) << shift;
        if (!(b & 0x80u)) {
            *out = x;
            return 1;
        }
        shift += 7u;
    }
    return 0;
}

/* ---- framing out: COBS(type, seq, body, crc32) + 0x00 ---- */

static void send_raw(proto_t *p, const uint8_t *raw, uint32_t len) {
    uint8_t *w = p->wire;
    uint32_t code_at = 0, n = 1, i;
    uint8_t code = 1;
    for (i = 0; i < len; i++) {
        if (raw[i] == 0) {
            w[code_at] = code;
            code_at = n++;
            code = 1;
        } else {
            w[n++] = raw[i];
            if (++code == 0xFFu) {
                w[code_at] = code;
                code_at = n++;
                code = 1;
            }
        }
    }
    w[code_at] = code;
    w[n++] = 0;
    p->link.bytes_tx += n;
    p->b->put(w, n);
}

/* finish the reply in p->tx (body already at tx[2..len)), cache it for retries, send it */
static void reply(proto_t *p, uint8_t type, uint8_t seq, uint32_t body_len) {
    uint32_t len = 2u + body_len;
    p->tx[0] = type;
    p->tx[1] = seq;
    wr32(p->tx + len, snn_crc32(0, p->tx, len));
    p->tx_len = len + 4u;
    send_raw(p, p->tx, p->tx_len);
}

static void error(proto_t *p, uint8_t seq, uint8_t code, uint32_t detail) {
    p->tx[2] = code;
    wr32(p->tx + 3, detail);
    reply(p, CMD_ERROR, seq, 5);
}

#define FAIL(code, detail)              \
    do {                                 \
        error(p, seq, code, detail);     \
        return;                          \
    } while (0)

/* An error that leaves the cached reply alone: a NAK for a frame we could not read, or the refusal of
 * a frame outside the retry session (seq 0xFF, a malformed PING). The cache must stay the reply to
 * last_seq, so that a retry of the last request still gets it and is not executed twice. */
static void error_uncached(proto_t *p, uint8_t seq, uint8_t code, uint32_t detail) {
    uint8_t b[2 + 5 + 4];
    b[0] = CMD_ERROR;
    b[1] = seq;
    b[2] = code;
    wr32(b + 3, detail);
    wr32(b + 7, snn_crc32(0, b, 7));
    send_raw(p, b, sizeof b);
}

static void nak_bad_frame(proto_t *p) { error_uncached(p, PROTO_SEQ_NONE, PERR_BAD_FRAME, p->link.frames_bad); }

/* ---- model slots ---- */

static int open_slot(proto_t *p, int slot) {
    uint32_t need = 0;
    if (slot < 0 || slot > 1) return 0;
    if (snn_validate(p->b->slot[slot], p->b->slot_capacity, p->b->board_id, &need) != SNN_OK) return 0;
    if (need > p->b->arena_size) return 0;
    if (snn_open(&p->eng, p->b->slot[slot], p->b->slot_capacity, p->b->board_id, p->b->arena, p->b->arena_size) !=
        SNN_OK)
        return 0;
    p->active = slot;
    return 1;
}

void proto_init(proto_t *p, const proto_board_t *b, int boot_slot) {
    memset(p, 0, sizeof *p);
    p->b = b;
    p->active = -1;
    p->load_slot = -1;
    p->last_seq = -1;
    if (!open_slot(p, boot_slot) && !open_slot(p, 0)) open_slot(p, 1);
}

/* ---- STEP: spikes on the wire ----
 * Per step: varint h = (n << 2) | mode. mode 0: n ascending indices as delta varints (first = index,
 * then index - previous - 1); mode 1: as 0, each followed by a count varint (inputs only); mode 2:
 * bitmap of the whole index space, n = bits set. Index space: input populations (requests) or the
 * reported LIF populations (replies), concatenated in image order. */

static uint32_t input_space(const snn_t *e) {
    uint32_t q, n = 0;
    for (q = 0; q < e->hdr->n_pops; q++)
        if (e->pops[q].kind == SNN_POP_INPUT) n += e->pops[q].n;
    return n;
}

static int reported(const snn_t *e, uint32_t q, uint8_t flags) {
    return e->pops[q].kind == SNN_POP_LIF && ((flags & 1u) || (e->pops[q].flags & SNN_POPF_OUTPUT));
}

static uint32_t output_space(const snn_t *e, uint8_t flags) {
    uint32_t q, n = 0;
    for (q = 0; q < e->hdr->n_pops; q++)
        if (reported(e, q, flags)) n += e->pops[q].n;
    return n;
}

/* Parse one step's inputs; with apply, feed them to the engine. Returns 0 if malformed. */
static int step_inputs(snn_t *e, const uint8_t **cur, const uint8_t *end, uint32_t n_in, int apply) {
    uint32_t h, n, mode, k, idx = 0, q = 0, base = 0;
    if (!get_varint(cur, end, &h)) return 0;
    n = h >> 2;
    mode = h & 3u;
    if (mode == 2u) {
        uint32_t bytes = (n_in + 7u) / 8u, set = 0;
        const uint8_t *bm = *cur;
        if ((uint32_t)(end - *cur) < bytes) return 0;
        *cur += bytes;
        for (k = 0; k < n_in; k++) {
            if (!(bm[k >> 3] & (1u << (k & 7u)))) continue;
            set++;
            if (apply) {
                while (e->pops[q].kind != SNN_POP_INPUT || k >= base + e->pops[q].n) {
                    if (e->pops[q].kind == SNN_POP_INPUT) base += e->pops[q].n;
                    q++;
                }
                snn_input(e, q, k - base, 1);
            }
        }
        return set == n;
    }
    if (mode > 1u || n > n_in) return 0;
    for (k = 0; k < n; k++) {
        uint32_t delta, count = 1;
        if (!get_varint(cur, end, &delta)) return 0;
        if (mode == 1u && (!get_varint(cur, end, &count) || count == 0 || count > 255u)) return 0;
        if (delta >= n_in) return 0;
        idx = k == 0 ? delta : idx + 1u + delta;
        if (idx >= n_in) return 0;
        if (apply) {
            while (e->pops[q].kind != SNN_POP_INPUT || idx >= base + e->pops[q].n) {
                if (e->pops[q].kind == SNN_POP_INPUT) base += e->pops[q].n;
                q++;
            }
            snn_input(e, q, idx - base, count);
        }
    }
    return 1;
}

/* Encode this step's reported spikes at out; returns bytes written. */
static uint32_t step_outputs(const snn_t *e, uint8_t flags, uint32_t n_out, uint8_t *out) {
    uint32_t q, base = 0, total = 0, list_bytes = 0, prev = 0, first = 1, bm_bytes = (n_out + 7u) / 8u, w;
    for (q = 0; q < e->hdr->n_pops; q++) {
        uint32_t n, i;
        const uint16_t *s;
        if (!reported(e, q, flags)) continue;
        s = snn_spikes(e, q, &n);
        for (i = 0; i < n; i++) {
            uint32_t g = base + s[i];
            list_bytes += varint_len(first ? g : g - prev - 1u);
            prev = g;
            first = 0;
        }
        total += n;
        base += e->pops[q].n;
    }
    if (list_bytes > bm_bytes) {
        w = put_varint(out, total << 2 | 2u);
        memset(out + w, 0, bm_bytes);
        base = 0;
        for (q = 0; q < e->hdr->n_pops; q++) {
            uint32_t n, i;
            const uint16_t *s;
            if (!reported(e, q, flags)) continue;
            s = snn_spikes(e, q, &n);
            for (i = 0; i < n; i++) out[w + ((base + s[i]) >> 3)] |= (uint8_t)(1u << ((base + s[i]) & 7u));
            base += e->pops[q].n;
        }
        return w + bm_bytes;
    }
    w = put_varint(out, total << 2);
    base = 0;
    first = 1;
    for (q = 0; q < e->hdr->n_pops; q++) {
        uint32_t n, i;
        const uint16_t *s;
        if (!reported(e, q, flags)) continue;
        s = snn_spikes(e, q, &n);
        for (i = 0; i < n; i++) {
            uint32_t g = base + s[i];
            w += put_varint(out + w, first ? g : g - prev - 1u);
            prev = g;
            first = 0;
        }
        base += e->pops[q].n;
    }
    return w;
}

static void cmd_step(proto_t *p, uint8_t seq, const uint8_t *body, uint32_t blen) {
    snn_t *e = &p->eng;
    uint8_t flags, steps;
    uint32_t n_in, n_out, worst, k, w;
    const uint8_t *cur, *end = body + blen;
    if (p->active < 0) FAIL(PERR_NO_MODEL, 0);
    if (blen < 2) FAIL(PERR_BAD_ARG, 0);
    flags = body[0];
    steps = body[1];
    n_in = input_space(e);
    n_out = output_space(e, flags);
    worst = varint_len(n_out << 2 | 2u) + (n_out + 7u) / 8u;
    if (2u + 5u + 4u + (uint32_t)steps * worst > PROTO_TX_MAX) FAIL(PERR_REPLY_TOO_BIG, worst);
    /* validate the whole batch before stepping once: a rejected request changes nothing */
    cur = body + 2;
    for (k = 0; k < steps; k++)
        if (!step_inputs(e, &cur, end, n_in, 0)) FAIL(PERR_BAD_INPUT, k);
    if (cur != end) FAIL(PERR_BAD_ARG, 1);
    wr32(p->tx + 2, e->t);
    p->tx[6] = steps;
    w = 7;
    cur = body + 2;
    for (k = 0; k < steps; k++) {
        snn_clear_inputs(e);
        step_inputs(e, &cur, end, n_in, 1);
        snn_step(e);
        w += step_outputs(e, flags, n_out, p->tx + w);
    }
    reply(p, CMD_STEP | CMD_REPLY, seq, w - 2u);
}

static void cmd_info(proto_t *p, uint8_t seq) {
    uint8_t *b = p->tx + 2;
    const snn_img_header_t *h = p->active >= 0 ? p->eng.hdr : NULL;
    memset(b, 0, 40);
    b[0] = PROTO_VERSION;
    b[1] = SNN_IMG_VERSION;
    wr32(b + 4, p->b->board_id);
    wr32(b + 8, p->b->slot_capacity);
    wr32(b + 12, p->b->arena_size);
    wr16(b + 16, PROTO_RX_MAX);
    wr16(b + 18, PROTO_TX_MAX);
    b[20] = p->active >= 0 ? (uint8_t)p->active : 0xFFu;
    b[21] = p->load_slot >= 0 ? (uint8_t)p->load_slot : 0xFFu;
    if (h) {
        wr32(b + 24, h->image_size);
        wr32(b + 28, h->crc32);
        wr32(b + 32, h->model_id);
        wr32(b + 36, p->eng.t);
    }
    reply(p, CMD_INFO | CMD_REPLY, seq, 40);
}

static void cmd_stats(proto_t *p, uint8_t seq) {
    uint8_t *b = p->tx + 2;
    const snn_counters_t *s = &p->eng.stats;
    int on = p->active >= 0;
    wr32(b + 0, on ? p->eng.t : 0);
    wr32(b + 4, on ? s->steps : 0);
    wr32(b + 8, on ? s->synapse_ops : 0);
    wr32(b + 12, on ? s->neuron_updates : 0);
    wr32(b + 16, on ? s->spikes_in : 0);
    wr32(b + 20, on ? s->spikes_out : 0);
    wr32(b + 24, p->link.frames_ok);
    wr32(b + 28, p->link.frames_bad);
    wr32(b + 32, p->link.frames_dup);
    wr32(b + 36, p->link.bytes_rx);
    wr32(b + 40, p->link.bytes_tx);
    reply(p, CMD_STATS | CMD_REPLY, seq, 44);
}

static void cmd_load(proto_t *p, uint8_t type, uint8_t seq, const uint8_t *body, uint32_t blen) {
    if (type == CMD_LOAD_BEGIN) {
        uint32_t size, crc;
        if (blen != 8) FAIL(PERR_BAD_ARG, blen);
        size = rd32(body);
        crc = rd32(body + 4);
        if (size > p->b->slot_capacity) FAIL(PERR_TOO_BIG, p->b->slot_capacity);
        if (size < sizeof(snn_img_header_t)) FAIL(PERR_BAD_ARG, size);
        /* always the slot that is not running: a torn load cannot touch the live model */
        p->load_slot = p->active == 0 ? 1 : 0;
        p->load_size = size;
        p->load_crc = crc;
        p->tx[2] = (uint8_t)p->load_slot;
        p->tx[3] = 0;
        wr16(p->tx + 4, PROTO_RX_MAX - 2u - 4u - 4u);
        { reply(p, CMD_LOAD_BEGIN | CMD_REPLY, seq, 4); return; }
    }
    if (p->load_slot < 0) FAIL(PERR_LOAD_STATE, 0);
    if (type == CMD_LOAD_CHUNK) {
        uint32_t off, n;
        if (blen < 4) FAIL(PERR_BAD_ARG, blen);
        off = rd32(body);
        n = blen - 4u;
        if (off > p->load_size || n > p->load_size - off) FAIL(PERR_LOAD_STATE, off);
        memcpy(p->b->slot[p->load_slot] + off, body + 4, n);
        wr32(p->tx + 2, off + n);
        { reply(p, CMD_LOAD_CHUNK | CMD_REPLY, seq, 4); return; }
    }
    {
        /* COMMIT: the CRC of what arrived, then the engine's full check, then switch */
        const uint8_t *img = p->b->slot[p->load_slot];
        uint32_t need = 0;
        int rc, slot = p->load_slot;
        if (snn_crc32(0, img, p->load_size) != p->load_crc) FAIL(PERR_CRC_MISMATCH, 0);
        rc = snn_validate(img, p->load_size, p->b->board_id, &need);
        if (rc != SNN_OK) FAIL(PERR_INVALID_IMAGE, (uint32_t)rc);
        if (need > p->b->arena_size) FAIL(PERR_ARENA, need);
        if (!open_slot(p, slot)) FAIL(PERR_INVALID_IMAGE, 0);
        p->load_slot = -1;
        if (p->b->commit_record) p->b->commit_record(slot);
        p->tx[2] = (uint8_t)slot;
        wr32(p->tx + 3, p->eng.hdr->model_id);
        { reply(p, CMD_LOAD_COMMIT | CMD_REPLY, seq, 5); return; }
    }
}

static void handle(proto_t *p) {
    uint8_t type, seq;
    const uint8_t *body;
    uint32_t blen;
    if (p->overflow || p->rx_len < 6u || snn_crc32(0, p->rx, p->rx_len - 4u) != rd32(p->rx + p->rx_len - 4u)) {
        p->link.frames_bad++;
        nak_bad_frame(p);
        return;
    }
    p->link.frames_ok++;
    type = p->rx[0];
    seq = p->rx[1];
    body = p->rx + 2;
    blen = p->rx_len - 6u;
    if (type == CMD_PING) {
        /* sync: a new session; forget the retry cache */
        if (blen != 4) {
            error_uncached(p, seq, PERR_BAD_ARG, blen);
            return;
        }
        memmove(p->tx + 2, body, 4);
        p->tx[6] = PROTO_VERSION;
        p->tx[7] = SNN_IMG_VERSION;
        wr16(p->tx + 8, 0);
        wr32(p->tx + 10, p->b->board_id);
        reply(p, CMD_PING | CMD_REPLY, seq, 12);
        p->last_seq = -1;
        return;
    }
    if (seq == PROTO_SEQ_NONE) {
        error_uncached(p, seq, PERR_BAD_ARG, 0);
        return;
    }
    if ((int)seq == p->last_seq) {
        /* the host did not get our reply: send it again, do not execute twice */
        p->link.frames_dup++;
        send_raw(p, p->tx, p->tx_len);
        return;
    }
    p->last_seq = seq;
    switch (type) {
    case CMD_INFO: cmd_info(p, seq); break;
    case CMD_LOAD_BEGIN:
    case CMD_LOAD_CHUNK:
    case CMD_LOAD_COMMIT: cmd_load(p, type, seq, body, blen); break;
    case CMD_RESET_STATE:
        if (p->active < 0) {
            error(p, seq, PERR_NO_MODEL, 0);
            break;
        }
        snn_reset(&p->eng);
        reply(p, CMD_RESET_STATE | CMD_REPLY, seq, 0);
        break;
    case CMD_STEP: cmd_step(p, seq, body, blen); break;
    case CMD_STATS: cmd_stats(p, seq); break;
    case CMD_REBOOT:
        reply(p, CMD_REBOOT | CMD_REPLY, seq, 0);
        if (p->b->reboot) p->b->reboot();
        break;
    default: error(p, seq, PERR_UNKNOWN_CMD, type); break;
    }
}

/* Streaming COBS decode: a block code c is followed by c-1 data bytes and an implied zero, except
 * after c = 0xFF and at the end of the frame. 0x00 ends a frame; empty frames are ignored. */
void proto_rx_byte(proto_t *p, uint8_t byte) {
    p->link.bytes_rx++;
    if (byte == 0) {
        if (p->in_frame) {
            if (p->code_left) p->overflow = 1; /* frame ended inside a block: truncated */
            handle(p);
        }
        p->rx_len = 0;
        p->code_left = 0;
        p->last_code = 0xFFu;
        p->overflow = 0;
        p->in_frame = 0;
        return;
    }
    if (!p->in_frame) {
        p->in_frame = 1;
        p->last_code = 0xFFu;
    }
    if (p->code_left == 0) {
        if (p->last_code != 0xFFu) {
            if (p->rx_len < PROTO_RX_MAX) p->rx[p->rx_len++] = 0;
            else p->overflow = 1;
        }
        p->last_code = byte;
        p->code_left = (uint8_t)(byte - 1u);
        return;
    }
    if (p->rx_len < PROTO_RX_MAX) p->rx[p->rx_len++] = byte;
    else p->overflow = 1;
    p->code_left--;
}
