/*
 * ad8232_ble.ino -- SelfMIS reference firmware, BLE variant: AD8232 on an
 * ESP32, frames sent as notifications of the SelfMIS GATT service
 * (PROTOCOL.md, "BLE transport").
 *
 * Needs: ESP32 Arduino core 2.x/3.x and the NimBLE-Arduino library 2.x
 * (h2zero, Library Manager: "NimBLE-Arduino").  NimBLE uses far less RAM
 * than the Bluedroid BLE library bundled with the core.
 *
 *   host:  edge-run --ble-scan              (lists "SelfMIS-ECG-xxxxxx")
 *          edge-run --ble AA:BB:CC:DD:EE:FF
 *
 * The gateway subscribes to DATA, then writes CONTROL 0x01 (send HELLO) and
 * 0x02 (start).  Streaming runs while a host is subscribed and has not
 * written 0x03 (stop).
 *
 * MTU: we ask for 247.  A 68-byte frame fits one notification from ATT_MTU
 * 71 up; below that (e.g. a host that keeps the default 23) each frame is
 * split into ATT_MTU-3 byte notifications -- the host's StreamDecoder
 * reassembles them because it decodes the concatenated notification values.
 *
 * Wiring and electrode placement: ../README.md.  selfmis_frame.c/.h here
 * are copies of ../../c/ (tests/test_fb_firmware.py checks that).
 */
#include <Arduino.h>
#include <NimBLEDevice.h>
#include "selfmis_frame.h"

/* ---- configuration --------------------------------------------------------- */
#define SAMPLE_RATE_HZ 250
#define SAMPLES_PER_FRAME 25
#define HELLO_EVERY_MS 5000UL
#define FIRMWARE_VERSION "ad8232_ble 1.0.0"
#define ECG_PIN 36                /* ADC1 only: ADC2 is unusable while the radio is on */
#define LO_PLUS_PIN 33
#define LO_MINUS_PIN 32
#define ADC_BITS 12
#define ADC_VREF_MV 3300.0f
#define AD8232_GAIN 1100.0f

static const float UV_PER_LSB = ADC_VREF_MV * 1000.0f / (float)(1L << ADC_BITS) / AD8232_GAIN;
static const int32_t ADC_MID = 1L << (ADC_BITS - 1);

/* ---- BLE state ---------------------------------------------------------------- */
static NimBLECharacteristic *data_char = NULL;
static volatile bool subscribed = false;
static volatile bool stopped = false;
static volatile bool hello_requested = false;
static volatile uint16_t att_mtu = 23;
static char device_name[32];
static char device_id[24];

class ServerCallbacks : public NimBLEServerCallbacks {
    void onConnect(NimBLEServer *server, NimBLEConnInfo &info) override
    {
        att_mtu = server->getPeerMTU(info.getConnHandle());
        stopped = false;
    }
    void onDisconnect(NimBLEServer *, NimBLEConnInfo &, int) override
    {
        subscribed = false;
        NimBLEDevice::startAdvertising();           /* be connectable again at once */
    }
    void onMTUChange(uint16_t mtu, NimBLEConnInfo &) override { att_mtu = mtu; }
};

class DataCallbacks : public NimBLECharacteristicCallbacks {
    void onSubscribe(NimBLECharacteristic *, NimBLEConnInfo &, uint16_t sub_value) override
    {
        subscribed = (sub_value & 0x0001) != 0;     /* bit 0: notifications enabled */
        if (subscribed) hello_requested = true;
    }
};

class ControlCallbacks : public NimBLECharacteristicCallbacks {
    void onWrite(NimBLECharacteristic *c, NimBLEConnInfo &) override
    {
        NimBLEAttValue v = c->getValue();
        if (v.length() < 1) return;
        switch (v.data()[0]) {
        case SM_CTRL_SEND_HELLO: hello_requested = true; break;
        case SM_CTRL_START: stopped = false; break;
        case SM_CTRL_STOP: stopped = true; break;
        default: break;                             /* unknown commands are ignored (forward compat) */
        }
    }
};

/* Send one frame, split into ATT_MTU-3 byte notifications if needed. */
static void ble_send(const uint8_t *frame, size_t len)
{
    size_t chunk = att_mtu > 3 ? (size_t)att_mtu - 3 : 20;
    while (len) {
        size_t n = len < chunk ? len : chunk;
        data_char->notify(frame, n);
        frame += n;
        len -= n;
    }
}

static void setup_ble(void)
{
    uint64_t mac = ESP.getEfuseMac();
    snprintf(device_id, sizeof(device_id), "esp32-%06lx", (unsigned long)(mac >> 24) & 0xFFFFFFUL);
    snprintf(device_name, sizeof(device_name), "SelfMIS-ECG-%06lx", (unsigned long)(mac >> 24) & 0xFFFFFFUL);
    NimBLEDevice::init(device_name);
    NimBLEDevice::setMTU(247);
    NimBLEServer *server = NimBLEDevice::createServer();
    server->setCallbacks(new ServerCallbacks());
    NimBLEService *svc = server->createService(SM_BLE_SERVICE_UUID);
    data_char = svc->createCharacteristic(SM_BLE_DATA_CHAR_UUID, NIMBLE_PROPERTY::NOTIFY);
    data_char->setCallbacks(new DataCallbacks());
    NimBLECharacteristic *ctrl = svc->createCharacteristic(
        SM_BLE_CONTROL_CHAR_UUID, NIMBLE_PROPERTY::WRITE | NIMBLE_PROPERTY::WRITE_NR);
    ctrl->setCallbacks(new ControlCallbacks());
    svc->start();
    /* 128-bit UUID (18 B) + flags fill most of the 31-byte advertisement:
     * the name goes into the scan response. */
    NimBLEAdvertising *adv = NimBLEDevice::getAdvertising();
    NimBLEAdvertisementData ad, scan;
    ad.setFlags(BLE_HS_ADV_F_DISC_GEN | BLE_HS_ADV_F_BREDR_UNSUP);
    ad.addServiceUUID(NimBLEUUID(SM_BLE_SERVICE_UUID));
    scan.setName(device_name);
    adv->setAdvertisementData(ad);
    adv->setScanResponseData(scan);
    adv->start();
}

/* ---- sampling (hardware timer counts ticks, loop() reads the ADC) ---------------- */
static hw_timer_t *sample_timer = NULL;
static portMUX_TYPE timer_mux = portMUX_INITIALIZER_UNLOCKED;
static volatile uint16_t ticks_pending = 0;

static void IRAM_ATTR on_sample_timer(void)
{
    portENTER_CRITICAL_ISR(&timer_mux);
    ticks_pending++;
    portEXIT_CRITICAL_ISR(&timer_mux);
}

static void start_sample_timer(void)
{
#if defined(ESP_ARDUINO_VERSION_MAJOR) && ESP_ARDUINO_VERSION_MAJOR >= 3
    sample_timer = timerBegin(1000000);
    timerAttachInterrupt(sample_timer, &on_sample_timer);
    timerAlarm(sample_timer, 1000000 / SAMPLE_RATE_HZ, true, 0);
#else
    sample_timer = timerBegin(0, 80, true);
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

/* ---- framing --------------------------------------------------------------------- */
static int32_t block[SAMPLES_PER_FRAME];
static uint8_t n_block = 0, block_flags = 0;
static uint16_t seq = 0;
static uint8_t frame_buf[SM_DATA_FRAME_LEN(SAMPLES_PER_FRAME, 2) + 64];
static unsigned long last_hello_ms = 0;

static void send_hello(void)
{
    sm_hello_t h;
    h.sample_format = SM_FMT_INT16_LE;
    h.fs_hz = (float)SAMPLE_RATE_HZ;
    h.uv_per_lsb = UV_PER_LSB;
    h.lead = "I";
    h.firmware_version = FIRMWARE_VERSION;
    h.device_id = device_id;
    size_t n = sm_encode_hello(frame_buf, sizeof(frame_buf), &h);
    if (n) ble_send(frame_buf, n);
    last_hello_ms = millis();
}

void setup()
{
    Serial.begin(115200);                            /* debug log only */
    pinMode(LO_PLUS_PIN, INPUT);
    pinMode(LO_MINUS_PIN, INPUT);
    analogReadResolution(ADC_BITS);
    analogSetPinAttenuation(ECG_PIN, ADC_11db);
    setup_ble();
    Serial.printf("%s advertising, %.4f uV/LSB\n", device_name, UV_PER_LSB);
    start_sample_timer();
}

void loop()
{
    uint16_t ticks = take_ticks();
    bool streaming = subscribed && !stopped;
    if (!streaming) {
        n_block = 0;                                 /* never send a frame mixing two sessions */
        block_flags = 0;
    }
    /* HELLO only between frames, and before the first frame of a session */
    if (streaming && n_block == 0 &&
        (hello_requested || millis() - last_hello_ms >= HELLO_EVERY_MS)) {
        hello_requested = false;
        send_hello();
    }
    while (ticks--) {
        bool lead_off = digitalRead(LO_PLUS_PIN) == HIGH || digitalRead(LO_MINUS_PIN) == HIGH;
        int32_t counts = (int32_t)analogRead(ECG_PIN) - ADC_MID;
        if (!streaming) continue;                    /* keep the timer running, drop samples */
        block[n_block++] = lead_off ? 0 : counts;
        if (lead_off) block_flags |= SM_FLAG_LEAD_OFF;
        if (n_block == SAMPLES_PER_FRAME) {
            size_t n = sm_encode_data(frame_buf, sizeof(frame_buf), seq++, block_flags,
                                      SM_FMT_INT16_LE, (float)SAMPLE_RATE_HZ, block, n_block);
            if (n) ble_send(frame_buf, n);
            n_block = 0;
            block_flags = 0;
        }
    }
    delay(1);                                        /* yield to the BLE host task */
}
