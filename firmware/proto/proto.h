/* Device side of the neurocc model protocol (docs/device-protocol.md): COBS frames with a sequence
 * number and CRC32, typed commands, error replies, two model slots. Portable C99: the board gives
 * byte output, slot storage and an arena through proto_board_t; bytes come in via proto_rx_byte.
 */
#ifndef NEUROCC_PROTO_H
#define NEUROCC_PROTO_H

#include <stdint.h>

#include "snn.h"

#define PROTO_VERSION 1u
#define PROTO_RX_MAX 1024u  /* largest decoded request (type + seq + body + crc) */
#define PROTO_TX_MAX 2048u  /* largest decoded reply */
#define PROTO_SEQ_NONE 0xFFu /* replies to frames whose seq could not be trusted */

enum proto_cmd {
    CMD_PING = 0x01,
    CMD_INFO = 0x02,
    CMD_LOAD_BEGIN = 0x10,
    CMD_LOAD_CHUNK = 0x11,
    CMD_LOAD_COMMIT = 0x12,
    CMD_RESET_STATE = 0x20,
    CMD_STEP = 0x30,
    CMD_STATS = 0x40,
    CMD_REBOOT = 0x50,
    CMD_ERROR = 0x7F, /* reply type of every error */
    CMD_REPLY = 0x80, /* reply type = command | 0x80 */
};

enum proto_err {
    PERR_BAD_FRAME = 1,     /* CRC, COBS or length: resend */
    PERR_UNKNOWN_CMD = 2,
    PERR_BAD_ARG = 3,       /* malformed body */
    PERR_NO_MODEL = 4,
    PERR_LOAD_STATE = 5,    /* chunk/commit without begin, or chunk outside the announced size */
    PERR_TOO_BIG = 6,       /* image larger than a slot */
    PERR_CRC_MISMATCH = 7,  /* committed bytes do not have the announced CRC32 */
    PERR_INVALID_IMAGE = 8, /* detail: snn_status */
    PERR_ARENA = 9,         /* the image needs more state RAM than the device has */
    PERR_BAD_INPUT = 10,    /* STEP input out of range */
    PERR_REPLY_TOO_BIG = 11,/* the batch's worst-case reply exceeds PROTO_TX_MAX: send fewer steps */
};

typedef struct {
    uint8_t *slot[2];
    uint32_t slot_capacity;
    void *arena;
    uint32_t arena_size;
    uint32_t board_id;
    void (*put)(const uint8_t *data, uint32_t n);
    /* make slot `slot` the one a reset boots (flash: a commit record; RAM: a noinit word) */
    void (*commit_record)(int slot);
    void (*reboot)(void);
} proto_board_t;

typedef struct {
    uint32_t frames_ok, frames_bad, frames_dup, bytes_rx, bytes_tx;
} proto_link_stats_t;

typedef struct {
    const proto_board_t *b;
    snn_t eng;
    int active;        /* slot of the running model, -1 none */
    /* load in progress */
    int load_slot;     /* -1 none */
    uint32_t load_size, load_crc;
    /* receive: streaming COBS decode */
    uint8_t rx[PROTO_RX_MAX];
    uint32_t rx_len;
    uint8_t code_left, last_code, overflow, in_frame;
    /* last reply, kept so a retried request (same seq) gets it again without re-executing */
    uint8_t tx[PROTO_TX_MAX];
    uint32_t tx_len;
    int last_seq;      /* -1 after PING */
    uint8_t wire[PROTO_TX_MAX + PROTO_TX_MAX / 254u + 4u];
    proto_link_stats_t link;
} proto_t;

/* Bind to the board; boot_slot: a slot whose image should be opened (-1: try A then B). */
void proto_init(proto_t *p, const proto_board_t *b, int boot_slot);
void proto_rx_byte(proto_t *p, uint8_t byte);

#endif
