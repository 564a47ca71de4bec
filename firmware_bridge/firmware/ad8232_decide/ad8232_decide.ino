/*
 * ad8232_decide.ino -- a wearable that decides on its own: AD8232 on an nRF52840 board
 * (Adafruit Feather nRF52840 / ItsyBitsy / Seeed XIAO nRF52840, Adafruit nRF52 Arduino core),
 * the whole SelfMIS chain on the Cortex-M4F (firmware_bridge/mcu/chain), and one DECISION
 * frame per decision over the project's BLE GATT service instead of 250 samples a second.
 *
 *   host:  edge-run --ble-scan                  (lists "SelfMIS-Decide-xxxxxx")
 *          edge-run --ble AA:BB:CC:DD:EE:FF      (decision events carry "on_device": true)
 *
 * Build (firmware_bridge/README.md, "A wearable that decides"):
 *   make wearable-sketch BUNDLE=micro FS=250
 * copies the chain library, the bundle's plain-C model and the generated parameters into this
 * folder (Arduino compiles every .c here); then Arduino IDE or
 *   arduino-cli compile --fqbn adafruit:nrf52:feather52840 firmware_bridge/firmware/ad8232_decide
 * The chain refuses to start at a rate other than the one it was generated for (FS above):
 * the LED then blinks fast and no decision is ever sent.
 *
 * minimal_main.c is this sketch's per-sample work without the Arduino core; CI builds it for
 * Cortex-M4F with arm-none-eabi-gcc and runs it under QEMU (benchmarks/results/wearable).
 */
#include <Arduino.h>
#include <bluefruit.h>
extern "C" {
#include "selfmis_chain.h"
#include "selfmis_decision.h"
}

/* ---- configuration ------------------------------------------------------------ */
#define ECG_PIN A0
#define LO_PLUS_PIN 5
#define LO_MINUS_PIN 6
#define ADC_BITS 12
#define ADC_VREF_MV 3600.0f        /* nRF52 SAADC, internal 0.6 V reference x 1/6 gain */
#define AD8232_GAIN 1100.0f
#define HELLO_EVERY_MS 5000UL
#define FIRMWARE_VERSION "ad8232_decide 1.0.0"

static const float MV_PER_LSB = ADC_VREF_MV / (float)(1L << ADC_BITS) / AD8232_GAIN;
static const int32_t ADC_MID = 1L << (ADC_BITS - 1);

/* ---- BLE: the SelfMIS service (core/ble_profile.py) ----------------------------- */
static uint8_t uuid_le(const char *s, uint8_t *out) {  /* "5e1f0001-..." -> 16 bytes, little-endian */
  int n = 0;
  for (int i = 0; s[i] && n < 32; i++) {
    char c = s[i];
    if (c == '-') continue;
    uint8_t v = (c <= '9') ? c - '0' : (c | 0x20) - 'a' + 10;
    int byte = 15 - n / 2;
    out[byte] = (n % 2) ? (out[byte] | v) : (uint8_t)(v << 4);
    n++;
  }
  return 16;
}
static uint8_t svc_uuid[16], data_uuid[16], ctrl_uuid[16];
static BLEService *svc;
static BLECharacteristic *data_chr, *ctrl_chr;
static volatile bool hello_requested = true, stopped = false;

static void on_control(uint16_t, BLECharacteristic *, uint8_t *d, uint16_t len) {
  if (len < 1) return;
  if (d[0] == SM_CTRL_SEND_HELLO) hello_requested = true;
  else if (d[0] == SM_CTRL_START) stopped = false;
  else if (d[0] == SM_CTRL_STOP) stopped = true;
}

static void ble_send(const uint8_t *frame, size_t len) {  /* split into ATT_MTU - 3 byte notifications */
  uint16_t conn = Bluefruit.connHandle();
  BLEConnection *c = Bluefruit.Connection(conn);
  size_t chunk = c ? c->getMtu() - 3 : 20;
  if (stopped || !data_chr->notifyEnabled()) return;
  while (len) {
    size_t n = len < chunk ? len : chunk;
    data_chr->notify(frame, (uint16_t)n);
    frame += n;
    len -= n;
  }
}

static void setup_ble(void) {
  char name[32];
  snprintf(name, sizeof name, "SelfMIS-Decide-%06lx", (unsigned long)(NRF_FICR->DEVICEADDR[0] & 0xFFFFFF));
  Bluefruit.configPrphBandwidth(BANDWIDTH_MAX);  /* ATT_MTU 247 */
  Bluefruit.begin();
  Bluefruit.setName(name);
  uuid_le(SM_BLE_SERVICE_UUID, svc_uuid);
  uuid_le(SM_BLE_DATA_CHAR_UUID, data_uuid);
  uuid_le(SM_BLE_CONTROL_CHAR_UUID, ctrl_uuid);
  svc = new BLEService(svc_uuid);
  svc->begin();
  data_chr = new BLECharacteristic(data_uuid);
  data_chr->setProperties(CHR_PROPS_NOTIFY);
  data_chr->setPermission(SECMODE_OPEN, SECMODE_NO_ACCESS);
  data_chr->setMaxLen(244);
  data_chr->begin();
  ctrl_chr = new BLECharacteristic(ctrl_uuid);
  ctrl_chr->setProperties(CHR_PROPS_WRITE | CHR_PROPS_WRITE_WO_RESP);
  ctrl_chr->setPermission(SECMODE_NO_ACCESS, SECMODE_OPEN);
  ctrl_chr->setWriteCallback(on_control);
  ctrl_chr->begin();
  Bluefruit.Advertising.addFlags(BLE_GAP_ADV_FLAGS_LE_ONLY_GENERAL_DISC_MODE);
  Bluefruit.Advertising.addService(*svc);
  Bluefruit.ScanResponse.addName();
  Bluefruit.Advertising.restartOnDisconnect(true);
  Bluefruit.Advertising.start(0);
}

/* ---- the chain ------------------------------------------------------------------ */
static smx_chain chain;
static uint16_t seq;
static uint8_t frame[SM_DECISION_FRAME_LEN(16, 32)];

static void on_event(void *, const smx_event *ev) {
  if (ev->type != SMX_EV_DECISION) return;
  sm_decision_t d = {seq++, (uint32_t)(ev->t * 1000.0 + 0.5), SMX_BUNDLE_ID, ev->state, ev->n_beats,
                     ev->active, (float)ev->hr, SMX_N_LABELS, ev->p, SMX_OPERATING_POINT};
  size_t n = sm_encode_decision(frame, sizeof frame, &d);
  ble_send(frame, n);
  digitalWrite(LED_BUILTIN, ev->active & 1 ? HIGH : LOW);  /* MI alarm on: LED on */
}

static void send_hello(void) {
  static uint8_t buf[96];
  sm_hello_t h = {SM_FMT_INT16_LE, (float)SMX_FS_IN, MV_PER_LSB * 1000.0f, "I", FIRMWARE_VERSION, "nrf52840"};
  ble_send(buf, sm_encode_hello(buf, sizeof buf, &h));
}

static volatile uint32_t ticks;
extern "C" void TIMER2_IRQHandler(void) {  /* SMX_FS_IN ticks per second from TIMER2 */
  if (NRF_TIMER2->EVENTS_COMPARE[0]) { NRF_TIMER2->EVENTS_COMPARE[0] = 0; ticks++; }
}
static void start_timer(void) {
  NRF_TIMER2->MODE = TIMER_MODE_MODE_Timer;
  NRF_TIMER2->BITMODE = TIMER_BITMODE_BITMODE_32Bit;
  NRF_TIMER2->PRESCALER = 4;                                   /* 1 MHz */
  NRF_TIMER2->CC[0] = (uint32_t)(1000000.0 / SMX_FS_IN + 0.5);
  NRF_TIMER2->SHORTS = TIMER_SHORTS_COMPARE0_CLEAR_Msk;
  NRF_TIMER2->INTENSET = TIMER_INTENSET_COMPARE0_Msk;
  NVIC_EnableIRQ(TIMER2_IRQn);
  NRF_TIMER2->TASKS_START = 1;
}

void setup() {
  pinMode(LED_BUILTIN, OUTPUT);
  pinMode(LO_PLUS_PIN, INPUT);
  pinMode(LO_MINUS_PIN, INPUT);
  analogReadResolution(ADC_BITS);
  setup_ble();
  if (smx_chain_init(&chain, SMX_FS_IN, on_event, 0) != SMX_OK) {
    for (;;) { digitalToggle(LED_BUILTIN); delay(100); }       /* generated for another rate */
  }
  start_timer();
}

void loop() {
  static uint32_t done, last_hello;
  while (done != ticks) {                                      /* one push per ADC sample */
    bool lead_off = digitalRead(LO_PLUS_PIN) || digitalRead(LO_MINUS_PIN);
    float mv = (float)(analogRead(ECG_PIN) - ADC_MID) * MV_PER_LSB;
    int err = smx_chain_push(&chain, &mv, 1, lead_off ? SMX_LEAD_OFF : 0);
    if (err != SMX_OK) { for (;;) { digitalToggle(LED_BUILTIN); delay(100); } }
    done++;
  }
  if (hello_requested || millis() - last_hello > HELLO_EVERY_MS) {
    hello_requested = false;
    last_hello = millis();
    send_hello();
  }
  __WFE();                                                    /* sleep until the next tick */
}
