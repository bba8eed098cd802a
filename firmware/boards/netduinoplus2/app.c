/* The model app: speaks the model protocol (firmware/proto) on USART1, runs the engine.
 *
 * Loaded into SRAM by the bootloader (AN3155 Write Memory + Go). Model slots, the boot record and
 * the engine arena sit at fixed addresses outside every linker section (layout.h), so startup never
 * clears them: a model flashed over AN3155 next to the app, or loaded earlier over the protocol,
 * survives Go and a reset.
 */
#include <stdint.h>

#include "layout.h"
#include "proto.h"
#include "stm32f405.h"
#include "usart.h"

#define BOOT_MAGIC 0x544F4F42u /* "BOOT" */

typedef struct {
    uint32_t magic, slot, generation, check;
} boot_record_t;

static proto_t g_proto;

static void put(const uint8_t *data, uint32_t n) { usart1_write(data, n); }

static boot_record_t *record(void) { return (boot_record_t *)BOOT_RECORD; }

static void commit_record(int slot) {
    boot_record_t *r = record();
    uint32_t gen = (r->magic == BOOT_MAGIC && r->check == (r->magic ^ r->slot ^ r->generation)) ? r->generation + 1u : 1u;
    r->magic = 0; /* invalid while half-written */
    r->slot = (uint32_t)slot;
    r->generation = gen;
    r->check = BOOT_MAGIC ^ (uint32_t)slot ^ gen;
    r->magic = BOOT_MAGIC;
}

static int boot_slot(void) {
    const boot_record_t *r = record();
    if (r->magic == BOOT_MAGIC && r->check == (r->magic ^ r->slot ^ r->generation) && r->slot < 2u)
        return (int)r->slot;
    return -1;
}

static void reboot(void) {
    usart1_quiesce();
    SCB_AIRCR = 0x05FA0004u; /* SYSRESETREQ: QEMU resets the machine, the ROM bootloader starts */
    for (;;) wfi();
}

static const proto_board_t board = {
    {(uint8_t *)SLOT_A, (uint8_t *)SLOT_B}, SLOT_SIZE, (void *)ARENA_START, ARENA_END - ARENA_START,
    SNN_BOARD_NETDUINOPLUS2, put, commit_record, reboot,
};

int main(void) {
    usart1_init();
    proto_init(&g_proto, &board, boot_slot());
    for (;;) proto_rx_byte(&g_proto, usart1_getc());
}
