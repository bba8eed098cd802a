/* Memory map of the netduinoplus2 images. backends/cortexm/boards.py and runtime/serial/an3155.py
 * hold the same numbers; tests/test_cortexm_qemu.py checks them against the built ELFs.
 *
 *   0x08000000  ROM   bootloader (QEMU -kernel; flash is not writable in QEMU)
 *   0x20000000  12 KiB  bootloader RAM while it runs (as ST's ROM bootloader reserves); then app .bss + stack
 *   0x20003000  28 KiB  app image: AN3155 Write Memory puts it here, Go starts it (stm32flash's RAM
 *                       for device 0x413 starts at 0x20003000 too)
 *   0x2000A000  32 KiB  model slot A  (no section covers it: survives reset and Go)
 *   0x20012000  32 KiB  model slot B
 *   0x2001A000  32 B    boot record: which slot a reset opens
 *   0x2001A020  ~24 KiB engine arena
 *   0x20020000  end of the real part's 128 KiB SRAM (QEMU maps 192 KiB; we stay within 128)
 */
#ifndef NEUROCC_LAYOUT_H
#define NEUROCC_LAYOUT_H

#define RAM_START 0x20000000u
#define RAM_END 0x20020000u
#define BOOT_RAM_END 0x20003000u
#define APP_START 0x20003000u
#define APP_END 0x2000A000u
#define SLOT_A 0x2000A000u
#define SLOT_B 0x20012000u
#define SLOT_SIZE 0x8000u
#define BOOT_RECORD 0x2001A000u
#define ARENA_START 0x2001A020u
#define ARENA_END RAM_END

#endif
