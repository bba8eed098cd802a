/* USART1 driver.
 *
 * Receive: the RXNE interrupt moves DR into a ring. When the ring is full the ISR masks the interrupt
 * in the NVIC and leaves the byte in DR, so the sender is held back instead of losing data (QEMU
 * backpressures while RXNE is set; on silicon, hardware flow control would be the equivalent).
 * Masking in the NVIC, not via RXNEIE: QEMU 7.2 lowers the USART's IRQ line only when DR is read.
 *
 * Transmit: write DR whenever TXE is set; otherwise sleep until the TXE interrupt. QEMU 7.2 models
 * TX as synchronous (TXE is always set, and it has no TXE interrupt), so there it never sleeps.
 *
 * The CPU sleeps in wfi and never polls SR: a polling guest starves QEMU's I/O thread and pins a
 * host core (../shared/research/cortexm.md §2). */
#include "usart.h"

#include "stm32f405.h"

#define RX_SIZE 512u /* a power of two: indices wrap with a mask */
#define IRQ_BIT (1u << (USART1_IRQn % 32u))
#define IRQ_REG (USART1_IRQn / 32u)

static volatile uint8_t rx_buf[RX_SIZE];
static volatile uint32_t rx_head, rx_tail;

void usart1_init(void) {
    RCC_AHB1ENR |= 1u;       /* GPIOA */
    RCC_APB2ENR |= 1u << 4;  /* USART1 */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18); /* PA9, PA10: alternate function */
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4);   /* AF7 = USART1 */
    USART1_BRR = 0x8Bu;      /* 115200 baud from the 16 MHz HSI (QEMU ignores BRR) */
    rx_head = rx_tail = 0;
    /* UE|RE stay set across bootloader -> app: QEMU drops bytes that arrive while they are clear */
    USART1_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;
    NVIC_ISER(IRQ_REG) = IRQ_BIT;
    irq_enable();
}

void USART1_IRQHandler(void) {
    uint32_t sr = USART1_SR;
    if (sr & USART_SR_RXNE) {
        if (rx_head - rx_tail < RX_SIZE) {
            rx_buf[rx_head & (RX_SIZE - 1u)] = (uint8_t)USART1_DR;
            rx_head++;
        } else {
            NVIC_ICER(IRQ_REG) = IRQ_BIT; /* full: hold the byte in DR until getc makes room */
        }
    }
    if ((sr & USART_SR_TXE) && (USART1_CR1 & USART_CR1_TXEIE))
        USART1_CR1 &= ~USART_CR1_TXEIE; /* the writer only needed waking */
}

uint8_t usart1_getc(void) {
    for (;;) {
        irq_disable();
        if (rx_head != rx_tail) {
            uint8_t b = rx_buf[rx_tail & (RX_SIZE - 1u)];
            rx_tail++;
            NVIC_ISER(IRQ_REG) = IRQ_BIT; /* room again (a no-op unless the ISR masked it) */
            irq_enable();
            return b;
        }
        /* with PRIMASK set, a pending interrupt still ends wfi; it is taken at cpsie: no lost wakeup */
        wfi();
        irq_enable();
    }
}

void usart1_write(const uint8_t *data, uint32_t n) {
    while (n) {
        if (USART1_SR & USART_SR_TXE) {
            USART1_DR = *data++;
            n--;
            continue;
        }
        irq_disable();
        USART1_CR1 |= USART_CR1_TXEIE;
        if (!(USART1_SR & USART_SR_TXE)) wfi();
        USART1_CR1 &= ~USART_CR1_TXEIE;
        irq_enable();
    }
}

void usart1_flush(void) {
    /* DR writes are complete when usart1_write returns (the last byte is in the shift register) */
}

void usart1_quiesce(void) {
    irq_disable();
    USART1_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE; /* keep receiving into DR, no interrupts */
    NVIC_ICER(IRQ_REG) = IRQ_BIT;
    NVIC_ICPR(IRQ_REG) = IRQ_BIT;
}
