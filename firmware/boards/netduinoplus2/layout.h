/* Memory map of the netduinoplus2 images. runtime/serial/an3155.py holds the same numbers;
 * tests/test_cortexm_qemu.py checks them against the built ELFs.
 *
 * QEMU 7.2 maps 192 KiB of SRAM at 0x20000000 (`info mtree`: STM32F405.sram 0x20000000-0x2002ffff) and
 * its flash is ROM, so the app and the model slots, which live in flash on silicon, sit in SRAM here.
 * What the real part keeps in its 128 KiB SRAM (DS8626) is the app's .bss and stack plus the engine
 * arena: 12 KiB + at most 64 KiB here, well inside it (the target's [memory] budget checks the arena).
 *
 *   0x08000000  ROM   bootloader (QEMU -kernel; flash is not writable in QEMU)
 *   0x20000000  12 KiB  bootloader RAM while it runs (as ST's ROM bootloader reserves); then app .bss + stack
 *   0x20003000  28 KiB  app image: AN3155 Write Memory puts it here, Go starts it (stm32flash's RAM
 *                       for device 0x413 starts at 0x20003000 too)
 *   0x2000A000  44 KiB  model slot A  (no section covers it: survives reset and Go)
 *   0x20015000  44 KiB  model slot B
 *   0x20020000  32 B    boot record: which slot a reset opens
 *   0x20020020  ~64 KiB engine arena (the N-MNIST CNN's state is 57 KiB)
 *   0x20030000  end of QEMU's SRAM
 */
#ifndef NEUROCC_LAYOUT_H
#define NEUROCC_LAYOUT_H

#define RAM_START 0x20000000u
#define RAM_END 0x20030000u
#define BOOT_RAM_END 0x20003000u
#define APP_START 0x20003000u
#define APP_END 0x2000A000u
#define SLOT_A 0x2000A000u
#define SLOT_B 0x20015000u
#define SLOT_SIZE 0xB000u
#define BOOT_RECORD 0x20020000u
#define ARENA_START 0x20020020u
#define ARENA_END RAM_END

#endif
