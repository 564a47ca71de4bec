/* Bare-metal start for a Cortex-M4F: vector table, reset handler, semihosting exit.
 *
 * Reset: copy .data from flash, zero .bss, paint the stack region with a pattern (the
 * high-water mark is the lowest word no longer holding it), enable the FPU (CPACR CP10/CP11
 * full access), call main, and report its status through semihosting SYS_EXIT_EXTENDED. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _stack_bottom, _stack_top;
int main(void);
void smx_reset(void);

#define PAINT 0xC0FFEE11u

static void fault(void) { for (;;) {} }

__attribute__((section(".vectors"), used))
const void *const smx_vectors[16] = {
  &_stack_top, (void *)smx_reset, (void *)fault, (void *)fault, (void *)fault, (void *)fault,
  (void *)fault, 0, 0, 0, 0, (void *)fault, (void *)fault, 0, (void *)fault, (void *)fault,
};

static int semihost(int op, void *arg) {
  register int r0 __asm__("r0") = op;
  register void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

/* semihosting file input and text output without newlib (the device image links no stdio) */
int smx_sh_open(const char *path) {
  uint32_t n = 0, args[3];
  while (path[n]) n++;
  args[0] = (uint32_t)path; args[1] = 1; /* "rb" */ args[2] = n;
  return semihost(0x01 /* SYS_OPEN */, args);
}
int smx_sh_read(int fd, void *buf, uint32_t len) {  /* bytes read */
  uint32_t args[3];
  args[0] = (uint32_t)fd; args[1] = (uint32_t)buf; args[2] = len;
  return (int)len - semihost(0x06 /* SYS_READ: returns bytes NOT read */, args);
}
void smx_sh_write0(const char *s) { semihost(0x04 /* SYS_WRITE0 */, (void *)s); }

/* bytes of the stack region ever used (painted words overwritten, from the top) */
uint32_t smx_stack_high_water(void) {
  uint32_t *p = &_stack_bottom;
  while (p < &_stack_top && *p == PAINT) p++;
  return (uint32_t)((uint8_t *)&_stack_top - (uint8_t *)p);
}

void smx_exit(int status) {
  uint32_t args[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)status};
  semihost(0x20 /* SYS_EXIT_EXTENDED */, args);
  for (;;) {}
}

void smx_reset(void) {
  uint32_t *src = &_sidata, *dst = &_sdata, *sp;
  while (dst < &_edata) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss; dst++) *dst = 0;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  for (dst = &_stack_bottom; dst < sp - 16; dst++) *dst = PAINT;  /* leave our own frame alone */
  *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);               /* CPACR: CP10, CP11 full */
  __asm__ volatile("dsb\n isb");
  smx_exit(main());
}

void _init(void) {}
void _fini(void) {}
