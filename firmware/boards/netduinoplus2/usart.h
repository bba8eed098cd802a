/* USART1 (PA9/PA10, QEMU -serial #0): interrupt-driven receive ring; every wait is wfi. */
#ifndef NEUROCC_USART_H
#define NEUROCC_USART_H

#include <stdint.h>

void usart1_init(void);
uint8_t usart1_getc(void);                       /* sleeps until a byte arrives */
void usart1_write(const uint8_t *data, uint32_t n); /* sleeps (TXE interrupt) while a byte is in flight */
void usart1_flush(void);                         /* everything written is on its way */
void usart1_quiesce(void);                       /* flush, then mask the interrupt (before Go / reset) */
void USART1_IRQHandler(void);

#endif
