/* Vector table and reset for every netduinoplus2 image (bootloader in ROM, app and bench).
 * The linker script provides _sidata/_sdata/_edata (copied unless VMA == LMA), _sbss/_ebss, _estack. */
#include <stdint.h>

#include "stm32f405.h"
#include "usart.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern const uint32_t __vectors[];
int main(void);

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
    irq_disable(); /* until main has set up its interrupts (Go arrives with PRIMASK set anyway) */
    SCB_VTOR = (uint32_t)__vectors; /* an app started by Go runs from SRAM: its own table */
    if (src != dst)
        while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    SCB_CPACR |= 0xFu << 20; /* CP10/CP11 full access: the FPU, should libgcc touch it */
    __asm__ volatile("dsb\n isb" ::: "memory");
    main();
    for (;;) wfi();
}

/* A fault sleeps instead of spinning: a spinning guest pins a host core. */
static void Fault_Handler(void) {
    irq_disable();
    for (;;) wfi();
}

static void Default_Handler(void) { Fault_Handler(); }

#pragma GCC diagnostic ignored "-Woverride-init" /* defaults first, then the real handlers */
#define NUM_IRQ 82u /* STM32F405: IRQ 0..81 */

__attribute__((section(".isr_vector"), used)) const uint32_t __vectors[16 + NUM_IRQ] = {
    [2 ... 16 + NUM_IRQ - 1] = (uint32_t)Default_Handler, /* GCC range: every unused IRQ */
    [0] = (uint32_t)&_estack,
    [1] = (uint32_t)Reset_Handler,
    [2] = (uint32_t)Default_Handler, /* NMI */
    [3] = (uint32_t)Fault_Handler,   /* HardFault */
    [4] = (uint32_t)Fault_Handler,   /* MemManage */
    [5] = (uint32_t)Fault_Handler,   /* BusFault */
    [6] = (uint32_t)Fault_Handler,   /* UsageFault */
    [11] = (uint32_t)Default_Handler, /* SVCall */
    [14] = (uint32_t)Default_Handler, /* PendSV */
    [15] = (uint32_t)Default_Handler, /* SysTick */
    [16 + USART1_IRQn] = (uint32_t)USART1_IRQHandler,
};
