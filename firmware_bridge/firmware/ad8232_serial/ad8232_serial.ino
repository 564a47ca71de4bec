/*
 * ad8232_serial.ino -- SelfMIS reference firmware: AD8232 single-lead ECG
 * streamed over USB serial in the SelfMIS framed protocol (PROTOCOL.md).
 *
 * Boards: ESP32 (Arduino core 2.x or 3.x) and AVR Arduinos (Uno/Nano/Mega).
 * Wiring and electrode placement: ../README.md.
 *
 *   host:  edge-run --port /dev/ttyUSB0            (framed, default)
 *          edge-run --port /dev/ttyUSB0 --ascii    (with OUTPUT_ASCII 1)
 *
 * Sampling: a hardware timer interrupt fires at SAMPLE_RATE_HZ and only
 * counts ticks; loop() takes one ADC reading per tick.  Reading the ADC in
 * the ISR is avoided on purpose (analogRead is not ISR-safe on ESP32 and
 * takes ~110 us on AVR); the sampling instant jitters by at most one loop
 * iteration (a few microseconds) while the *rate* stays exact because no
 * tick is ever lost (ticks_pending counts them).
 *
 * selfmis_frame.c/.h in this folder are copies of ../../c/ (Arduino builds
 * only the sketch folder); tests/test_fb_firmware.py checks they are identical.
 */
#include <Arduino.h>
#include "selfmis_frame.h"

/* ---- configuration --------------------------------------------------------- */
#ifndef OUTPUT_ASCII
#define OUTPUT_ASCII 0            /* 1: one integer per line, '!' on lead-off (hobby format) */
#endif
#define SAMPLE_RATE_HZ 250        /* 250 or 500; the model is trained on resampled data */
#define SAMPLES_PER_FRAME 25      /* 10 frames/s at 250 Hz; 68-byte frames */
#define SERIAL_BAUD 115200
#define HELLO_EVERY_MS 5000UL     /* late-joining hosts learn the scale from HELLO */
#define FIRMWARE_VERSION "ad8232_serial 1.0.0"

#if defined(ARDUINO_ARCH_ESP32)
  #define ECG_PIN 36              /* ADC1_CH0 (VP); ADC2 pins stop working when Wi-Fi is on */
  #define LO_PLUS_PIN 33
  #define LO_MINUS_PIN 32
  #define ADC_BITS 12
  #define ADC_VREF_MV 3300.0f     /* with 11 dB attenuation; calibrate per board if needed */
#else
  #define ECG_PIN A0
  #define LO_PLUS_PIN 10
  #define LO_MINUS_PIN 11
  #define ADC_BITS 10
  #define ADC_VREF_MV 5000.0f
#endif
/* SparkFun/clone AD8232 modules: instrumentation amp (100) x op-amp stage (11). */
#define AD8232_GAIN 1100.0f

/* uV at the electrodes per ADC count: Vref / 2^bits / gain.
 * ESP32: 3300 mV / 4096 / 1100 = 0.732 uV; Uno: 5000 mV / 1024 / 1100 = 4.44 uV. */
static const float UV_PER_LSB = ADC_VREF_MV * 1000.0f / (float)(1L << ADC_BITS) / AD8232_GAIN;
static const int32_t ADC_MID = 1L << (ADC_BITS - 1); /* AD8232 output rests at Vs/2 */

/* ---- timer ----------------------------------------------------------------------- */
static volatile uint16_t ticks_pending = 0;
static uint32_t overruns = 0;

#if defined(ARDUINO_ARCH_ESP32)
static hw_timer_t *sample_timer = NULL;
static portMUX_TYPE timer_mux = portMUX_INITIALIZER_UNLOCKED;

static void IRAM_ATTR on_sample_timer(void)
{
    portENTER_CRITICAL_ISR(&timer_mux);
    ticks_pending++;
    portEXIT_CRITICAL_ISR(&timer_mux);
}

static void start_sample_timer(void)
{
#if defined(ESP_ARDUINO_VERSION_MAJOR) && ESP_ARDUINO_VERSION_MAJOR >= 3
    sample_timer = timerBegin(1000000);                 /* 1 MHz tick */
    timerAttachInterrupt(sample_timer, &on_sample_timer);
    timerAlarm(sample_timer, 1000000 / SAMPLE_RATE_HZ, true, 0);
#else
    sample_timer = timerBegin(0, 80, true);             /* 80 MHz APB / 80 = 1 MHz */
    timerAttachInterrupt(sample_timer, &on_sample_timer, true);
    timerAlarmWrite(sample_timer, 1000000 / SAMPLE_RATE_HZ, true);
    timerAlarmEnable(sample_timer);
#endif
}

static uint16_t take_ticks(void)
{
    uint16_t n;
    portENTER_CRITICAL(&timer_mux);
    n = ticks_pending;
    ticks_pending = 0;
    portEXIT_CRITICAL(&timer_mux);
    return n;
}
#else /* AVR: Timer1 in CTC mode */
ISR(TIMER1_COMPA_vect)
{
    ticks_pending++;
}

static void start_sample_timer(void)
{
    noInterrupts();
    TCCR1A = 0;
    TCCR1B = _BV(WGM12) | _BV(CS11);                   /* CTC, prescaler 8: 2 MHz at 16 MHz */
    OCR1A = (uint16_t)(F_CPU / 8 / SAMPLE_RATE_HZ - 1);
    TCNT1 = 0;
    TIMSK1 |= _BV(OCIE1A);
    interrupts();
}

static uint16_t take_ticks(void)
{
    uint16_t n;
    noInterrupts();
    n = ticks_pending;
    ticks_pending = 0;
    interrupts();
    return n;
}
#endif

/* ---- output ------------------------------------------------------------------------ */
static uint8_t n_block = 0;                       /* samples waiting for the next frame */
static unsigned long last_hello_ms = 0;
#if !OUTPUT_ASCII
static int32_t block[SAMPLES_PER_FRAME];
static uint8_t block_flags = 0;
static uint16_t seq = 0;
static uint8_t frame_buf[SM_DATA_FRAME_LEN(SAMPLES_PER_FRAME, 2) + 64];
#endif

static void send_hello(void)
{
#if OUTPUT_ASCII
    Serial.print(F("# fs="));
    Serial.print(SAMPLE_RATE_HZ);
    Serial.print(F(" lead=I uv_per_lsb="));
    Serial.print(UV_PER_LSB, 5);
    Serial.print(F(" firmware="));
    Serial.println(F(FIRMWARE_VERSION));
#else
    sm_hello_t h;
    char device_id[24];
#if defined(ARDUINO_ARCH_ESP32)
    uint64_t mac = ESP.getEfuseMac();
    snprintf(device_id, sizeof(device_id), "esp32-%06lx", (unsigned long)(mac >> 24) & 0xFFFFFFUL);
#else
    snprintf(device_id, sizeof(device_id), "avr");
#endif
    h.sample_format = SM_FMT_INT16_LE;
    h.fs_hz = (float)SAMPLE_RATE_HZ;
    h.uv_per_lsb = UV_PER_LSB;
    h.lead = "I";
    h.firmware_version = FIRMWARE_VERSION;
    h.device_id = device_id;
    size_t n = sm_encode_hello(frame_buf, sizeof(frame_buf), &h);
    if (n) Serial.write(frame_buf, n);
#endif
    last_hello_ms = millis();
}

static void emit_sample(int32_t counts, bool lead_off)
{
#if OUTPUT_ASCII
    if (lead_off) Serial.println('!');
    else Serial.println(counts);
#else
    block[n_block++] = lead_off ? 0 : counts;    /* values are meaningless while lead-off */
    if (lead_off) block_flags |= SM_FLAG_LEAD_OFF;
    if (n_block == SAMPLES_PER_FRAME) {
        size_t n = sm_encode_data(frame_buf, sizeof(frame_buf), seq++, block_flags, SM_FMT_INT16_LE,
                                  (float)SAMPLE_RATE_HZ, block, n_block);
        /* Serial.write blocks when the TX buffer is full; at 115200 baud a 68-byte
         * frame takes 6 ms of a 100 ms frame period, so it never does in practice. */
        if (n) Serial.write(frame_buf, n);
        n_block = 0;
        block_flags = 0;
    }
#endif
}

void setup()
{
    Serial.begin(SERIAL_BAUD);
    pinMode(LO_PLUS_PIN, INPUT);
    pinMode(LO_MINUS_PIN, INPUT);
#if defined(ARDUINO_ARCH_ESP32)
    analogReadResolution(ADC_BITS);
    analogSetPinAttenuation(ECG_PIN, ADC_11db);      /* 0..~3.1 V input range */
#endif
    delay(200);                                      /* let a USB host open the port */
    send_hello();
    start_sample_timer();
}

void loop()
{
    uint16_t ticks = take_ticks();
    if (ticks > 1) overruns += ticks - 1;            /* the loop fell behind: still take every sample */
    while (ticks--) {
        bool lead_off = digitalRead(LO_PLUS_PIN) == HIGH || digitalRead(LO_MINUS_PIN) == HIGH;
        int32_t counts = (int32_t)analogRead(ECG_PIN) - ADC_MID;
        emit_sample(counts, lead_off);
    }
    if (millis() - last_hello_ms >= HELLO_EVERY_MS && n_block == 0) send_hello();
}
