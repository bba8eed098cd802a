/* Resident AN3155 bootloader (device side) for QEMU's netduinoplus2.
 *
 * Implements sync 0x7F, Get (0x00), Get Version (0x01), Get ID (0x02, PID 0x413), Read Memory (0x11),
 * Go (0x21), Write Memory (0x31) and Extended Erase (0x44), byte for byte as ST's ROM bootloader
 * answers them (AN3155 rev 14), so stm32loader and stm32flash drive it unchanged. QEMU's flash is
 * ROM, so Write Memory accepts SRAM [0x20003000, 0x20030000) and Go starts an app there; page erase
 * of SRAM is acknowledged and does nothing, mass erase fills the app area with 0xFF.
 */
#include <stdint.h>
#include <string.h>

#include "layout.h"
#include "stm32f405.h"
#include "usart.h"

#define ACK 0x79u
#define NACK 0x1Fu
#define BL_VERSION 0x31u
#define PID 0x0413u

/* What Read Memory returns for system memory 0x1FFF7A00..0x1FFF7AFF (QEMU maps nothing there):
 * the 96-bit unique id at 0x1FFF7A10 and the flash size in KiB at 0x1FFF7A22 (RM0090 §39). */
#define SYSMEM_BASE 0x1FFF7A00u
static uint8_t sysmem[256];

static const uint8_t commands[] = {0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x44};

static void put(uint8_t b) { usart1_write(&b, 1); }
static uint8_t get(void) { return usart1_getc(); }

/* 4 address bytes (MSB first) + XOR checksum */
static int get_address(uint32_t *addr) {
    uint8_t b[4], x;
    int i;
    for (i = 0; i < 4; i++) b[i] = get();
    x = get();
    if ((uint8_t)(b[0] ^ b[1] ^ b[2] ^ b[3]) != x) return 0;
    *addr = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 1;
}

static int readable(uint32_t a, uint32_t n) {
    uint64_t end = (uint64_t)a + n;
    return (a >= RAM_START && end <= RAM_END) || (a >= 0x08000000u && end <= 0x08100000u) ||
           (a >= SYSMEM_BASE && end <= SYSMEM_BASE + sizeof sysmem);
}

static int writable(uint32_t a, uint32_t n) {
    return a >= BOOT_RAM_END && (uint64_t)a + n <= RAM_END; /* never our own RAM */
}

static void cmd_get(void) {
    uint32_t i;
    put(ACK);
    put((uint8_t)sizeof commands); /* N = bytes that follow - 1 */
    put(BL_VERSION);
    for (i = 0; i < sizeof commands; i++) put(commands[i]);
    put(ACK);
}

static void cmd_read(void) {
    uint32_t addr, n;
    uint8_t len, cpl;
    put(ACK);
    if (!get_address(&addr)) { put(NACK); return; }
    put(ACK);
    len = get();
    cpl = get();
    n = (uint32_t)len + 1u;
    if ((uint8_t)(len ^ cpl) != 0xFFu || !readable(addr, n)) { put(NACK); return; }
    put(ACK);
    if (addr >= SYSMEM_BASE && addr < SYSMEM_BASE + sizeof sysmem) usart1_write(sysmem + (addr - SYSMEM_BASE), n);
    else usart1_write((const uint8_t *)addr, n);
}

static void cmd_write(void) {
    static uint8_t buf[256];
    uint32_t addr, n, i;
    uint8_t len, x, sum;
    put(ACK);
    if (!get_address(&addr)) { put(NACK); return; }
    put(ACK);
    len = get();
    n = (uint32_t)len + 1u;
    sum = len;
    for (i = 0; i < n; i++) {
        buf[i] = get();
        sum ^= buf[i];
    }
    x = get();
    if (x != sum || !writable(addr, n)) { put(NACK); return; }
    memcpy((void *)addr, buf, n);
    put(ACK);
}

static void cmd_erase(void) {
    uint8_t hi, lo, sum, x;
    uint32_t n, i;
    put(ACK);
    hi = get();
    lo = get();
    n = (uint32_t)hi << 8 | lo;
    if (n >= 0xFFF0u) { /* special erase: 0xFFFF mass, 0xFFFE bank 1, 0xFFFD bank 2 */
        x = get();
        if (x != (uint8_t)(hi ^ lo)) { put(NACK); return; }
        memset((void *)BOOT_RAM_END, 0xFF, RAM_END - BOOT_RAM_END);
        { put(ACK); return; }
    }
    sum = hi ^ lo;
    for (i = 0; i <= n; i++) { /* n+1 page numbers, 2 bytes each */
        sum ^= get();
        sum ^= get();
    }
    x = get();
    put(x == sum ? ACK : NACK); /* SRAM needs no erase */
}

static void cmd_go(void) {
    uint32_t addr, sp, pc;
    put(ACK);
    if (!get_address(&addr)) { put(NACK); return; }
    if (!writable(addr, 8) && addr != 0x08000000u) { put(NACK); return; }
    sp = ((const uint32_t *)addr)[0];
    pc = ((const uint32_t *)addr)[1];
    if (sp < RAM_START || sp > RAM_END || !(pc & 1u)) { put(NACK); return; } /* nothing loaded there */
    put(ACK);
    usart1_quiesce(); /* UE|RE stay on: a byte sent meanwhile waits in DR for the app */
    __asm__ volatile("msr msp, %0\n bx %1" ::"r"(sp), "r"(pc) : "memory");
}

int main(void) {
    int synced = 0;
    uint32_t i;
    for (i = 0; i < sizeof sysmem; i++) sysmem[i] = 0xFF;
    for (i = 0; i < 12; i++) sysmem[0x10 + i] = (uint8_t)(0x4Eu + i); /* a fixed, recognisable UID */
    sysmem[0x22] = 0x00; /* 1024 KiB of flash */
    sysmem[0x23] = 0x04;
    usart1_init();
    for (;;) {
        uint8_t c = get(), x;
        if (!synced) {
            if (c == 0x7Fu) {
                synced = 1;
                put(ACK);
            }
            continue;
        }
        if (c == 0x7Fu) { /* a second sync (a new client session): answer like an unknown command */
            put(NACK);
            continue;
        }
        x = get();
        if ((uint8_t)(c ^ x) != 0xFFu) {
            put(NACK);
            continue;
        }
        switch (c) {
        case 0x00: cmd_get(); break;
        case 0x01:
            put(ACK);
            put(BL_VERSION);
            put(0x00);
            put(0x00);
            put(ACK);
            break;
        case 0x02:
            put(ACK);
            put(1); /* N = 1: two bytes follow */
            put((uint8_t)(PID >> 8));
            put((uint8_t)PID);
            put(ACK);
            break;
        case 0x11: cmd_read(); break;
        case 0x21: cmd_go(); break;
        case 0x31: cmd_write(); break;
        case 0x44: cmd_erase(); break;
        default: put(NACK); break;
        }
    }
}
