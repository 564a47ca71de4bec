"""Reference firmware: the sketches compile and run on the host against stub Arduino/NimBLE APIs.

The stubs below model only what the sketches use (ESP32 Arduino core 3.x
timer API, NimBLE-Arduino 2.x server API).  The harness fires the sample
timer, feeds ADC readings from a real record, and captures what the sketch
writes to Serial or notifies over BLE; the Python decoder must get the
samples back exactly.  This checks the sketches' logic and their use of the
shared C framing -- not the vendor toolchains, which CI cannot run.
"""
import filecmp
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import selfmis.firmware_bridge as fb
from selfmis import protocol as P
from selfmis import ascii_sketch
from selfmis.firmware_bridge.virtual_device import default_record_path

ROOT = Path(fb.__file__).resolve().parent
GXX, GCC = shutil.which("g++"), shutil.which("gcc")
needs_gxx = pytest.mark.skipif(GXX is None or GCC is None,
                               reason="gcc/g++ not installed (apt-get install gcc g++)")

ARDUINO_H = r"""
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <string>
#include <vector>
#define HIGH 1
#define LOW 0
#define INPUT 0
#define F(s) (s)
#ifdef STUB_AVR  /* ATmega328P: Timer1 registers as plain variables, ISR as a function */
#define F_CPU 16000000UL
#define A0 14
#define WGM12 3
#define CS11 1
#define OCIE1A 1
#define _BV(b) (1u << (b))
extern volatile uint8_t TCCR1A, TCCR1B, TIMSK1;
extern volatile uint16_t OCR1A, TCNT1;
#define ISR(vector) extern "C" void vector(void)
extern "C" void TIMER1_COMPA_vect(void);
inline void noInterrupts(void) {}
inline void interrupts(void) {}
#else
#define ARDUINO_ARCH_ESP32 1
#define ESP_ARDUINO_VERSION_MAJOR 3
#endif
#define IRAM_ATTR
#define ADC_11db 3
typedef struct hw_timer_s { int dummy; } hw_timer_t;
typedef int portMUX_TYPE;
#define portMUX_INITIALIZER_UNLOCKED 0
#define portENTER_CRITICAL_ISR(m) ((void)(m))
#define portEXIT_CRITICAL_ISR(m) ((void)(m))
#define portENTER_CRITICAL(m) ((void)(m))
#define portEXIT_CRITICAL(m) ((void)(m))
extern void (*g_timer_cb)(void);
extern uint64_t g_timer_alarm_us;
inline hw_timer_t *timerBegin(uint32_t) { static hw_timer_t t; return &t; }
inline void timerAttachInterrupt(hw_timer_t *, void (*cb)(void)) { g_timer_cb = cb; }
inline void timerAlarm(hw_timer_t *, uint64_t us, bool, uint64_t) { g_timer_alarm_us = us; }
int analogRead(uint8_t pin);
int digitalRead(uint8_t pin);
inline void pinMode(uint8_t, uint8_t) {}
inline void analogReadResolution(int) {}
inline void analogSetPinAttenuation(uint8_t, int) {}
unsigned long millis(void);
inline void delay(unsigned long) {}
struct EspClass { uint64_t getEfuseMac() { return 0x123456789ABCULL; } };
extern EspClass ESP;
struct SerialStub {
  FILE *out = stdout;
  void begin(unsigned long) {}
  size_t write(const uint8_t *d, size_t n) { return fwrite(d, 1, n, out); }
  size_t print(const char *s) { return fputs(s, out) >= 0 ? strlen(s) : 0; }
  size_t print(char c) { return fputc(c, out) != EOF; }
  size_t print(int v) { return fprintf(out, "%d", v); }
  size_t print(long v) { return fprintf(out, "%ld", v); }
  size_t print(double v, int digits = 2) { return fprintf(out, "%.*f", digits, v); }
  template <typename T> size_t println(T v) { size_t n = print(v); return n + print("\r\n"); }
  size_t printf(const char *fmt, ...) { return 0; }
};
extern SerialStub Serial;
"""

NIMBLE_H = r"""
#pragma once
#include <Arduino.h>
#define BLE_HS_ADV_F_DISC_GEN 0x02
#define BLE_HS_ADV_F_BREDR_UNSUP 0x04
extern uint16_t g_mtu;
extern std::vector<size_t> g_notify_sizes;
struct NimBLEConnInfo { uint16_t getConnHandle() const { return 1; } uint16_t getMTU() const { return g_mtu; } };
struct NimBLEAttValue {
  std::string v;
  size_t length() const { return v.size(); }
  const uint8_t *data() const { return (const uint8_t *)v.data(); }
};
class NimBLEServer;
class NimBLECharacteristic;
struct NimBLEServerCallbacks {
  virtual ~NimBLEServerCallbacks() {}
  virtual void onConnect(NimBLEServer *, NimBLEConnInfo &) {}
  virtual void onDisconnect(NimBLEServer *, NimBLEConnInfo &, int) {}
  virtual void onMTUChange(uint16_t, NimBLEConnInfo &) {}
};
struct NimBLECharacteristicCallbacks {
  virtual ~NimBLECharacteristicCallbacks() {}
  virtual void onWrite(NimBLECharacteristic *, NimBLEConnInfo &) {}
  virtual void onSubscribe(NimBLECharacteristic *, NimBLEConnInfo &, uint16_t) {}
};
namespace NIMBLE_PROPERTY { enum : uint32_t { READ = 0x02, WRITE_NR = 0x04, WRITE = 0x08, NOTIFY = 0x10 }; }
struct NimBLECharacteristic {
  std::string uuid; uint32_t props; NimBLECharacteristicCallbacks *cb = nullptr; NimBLEAttValue value;
  void setCallbacks(NimBLECharacteristicCallbacks *c) { cb = c; }
  NimBLEAttValue getValue() { return value; }
  bool notify(const uint8_t *d, size_t n, uint16_t = 0xFFFF) const {
    g_notify_sizes.push_back(n); return fwrite(d, 1, n, stdout) == n; }
};
extern std::vector<NimBLECharacteristic *> g_chars;
struct NimBLEService {
  NimBLECharacteristic *createCharacteristic(const char *uuid, uint32_t props) {
    NimBLECharacteristic *c = new NimBLECharacteristic(); c->uuid = uuid; c->props = props;
    g_chars.push_back(c); return c; }
  bool start() { return true; }
};
struct NimBLEServer {
  NimBLEServerCallbacks *cb = nullptr;
  void setCallbacks(NimBLEServerCallbacks *c) { cb = c; }
  NimBLEService *createService(const char *) { return new NimBLEService(); }
  uint16_t getPeerMTU(uint16_t) { return g_mtu; }
};
struct NimBLEUUID { explicit NimBLEUUID(const char *) {} };
struct NimBLEAdvertisementData {
  bool setFlags(uint8_t) { return true; }
  bool addServiceUUID(const NimBLEUUID &) { return true; }
  bool setName(const std::string &) { return true; }
};
struct NimBLEAdvertising {
  bool setAdvertisementData(const NimBLEAdvertisementData &) { return true; }
  bool setScanResponseData(const NimBLEAdvertisementData &) { return true; }
  bool start() { return true; }
};
extern NimBLEServer *g_server;
struct NimBLEDevice {
  static bool init(const std::string &) { return true; }
  static bool setMTU(uint16_t) { return true; }
  static NimBLEServer *createServer() { g_server = new NimBLEServer(); return g_server; }
  static NimBLEAdvertising *getAdvertising() { static NimBLEAdvertising a; return &a; }
  static bool startAdvertising() { return true; }
};
"""

HARNESS = r"""
#include <Arduino.h>
#include <stdlib.h>
#include SKETCH
void (*g_timer_cb)(void) = 0;
uint64_t g_timer_alarm_us = 0;
#ifdef STUB_AVR
volatile uint8_t TCCR1A, TCCR1B, TIMSK1;
volatile uint16_t OCR1A, TCNT1;
#endif
EspClass ESP;
SerialStub Serial;
static std::vector<int> g_adc, g_lo;
static size_t g_i = 0;
static unsigned long g_ms = 0;
int analogRead(uint8_t) { return g_adc[g_i]; }
int digitalRead(uint8_t) { return g_lo[g_i] ? HIGH : LOW; }
unsigned long millis(void) { return g_ms; }
#ifdef WITH_BLE
uint16_t g_mtu = 23;
std::vector<size_t> g_notify_sizes;
std::vector<NimBLECharacteristic *> g_chars;
NimBLEServer *g_server = 0;
static NimBLECharacteristic *find_char(const char *uuid) {
  for (auto *c : g_chars) if (c->uuid == uuid) return c;
  fprintf(stderr, "no characteristic %s\n", uuid); exit(3);
}
static void control(uint8_t cmd) {
  NimBLEConnInfo info; NimBLECharacteristic *c = find_char(SM_BLE_CONTROL_CHAR_UUID);
  c->value.v = std::string(1, (char)cmd); c->cb->onWrite(c, info);
}
#endif
int main(int argc, char **argv) {
  FILE *f = fopen(argv[1], "r");
  int a, l;
  while (fscanf(f, "%d %d", &a, &l) == 2) { g_adc.push_back(a); g_lo.push_back(l); }
  fclose(f);
  setup();
#ifdef STUB_AVR
  g_timer_cb = TIMER1_COMPA_vect;
  if (OCR1A != F_CPU / 8 / SAMPLE_RATE_HZ - 1 || !(TIMSK1 & _BV(OCIE1A))) { fprintf(stderr, "Timer1 not set up\n"); return 2; }
#else
  if (!g_timer_cb || g_timer_alarm_us != 1000000 / SAMPLE_RATE_HZ) { fprintf(stderr, "timer not set up\n"); return 2; }
#endif
#ifdef WITH_BLE
  NimBLEConnInfo info;
  g_server->cb->onConnect(g_server, info);
  NimBLECharacteristic *data = find_char(SM_BLE_DATA_CHAR_UUID);
  data->cb->onSubscribe(data, info, 1);
  control(SM_CTRL_SEND_HELLO);
  control(SM_CTRL_START);
#endif
  for (g_i = 0; g_i < g_adc.size(); g_i++) {
    g_ms = (unsigned long)(g_i * 1000UL / SAMPLE_RATE_HZ);
    g_timer_cb();
    loop();
  }
#ifdef WITH_BLE
  size_t mx = 0; for (size_t n : g_notify_sizes) if (n > mx) mx = n;
  fprintf(stderr, "notifications=%zu max=%zu\n", g_notify_sizes.size(), mx);
#endif
  fflush(stdout);
  return 0;
}
"""


def _build(tmp_path, sketch, defines=()):
    sk = ROOT / "firmware" / sketch
    (tmp_path / "Arduino.h").write_text(ARDUINO_H)
    (tmp_path / "NimBLEDevice.h").write_text(NIMBLE_H)
    (tmp_path / "harness.cpp").write_text(HARNESS)
    exe, obj = tmp_path / f"{sketch}.bin", tmp_path / "selfmis_frame.o"
    # the sketch's own copy of the framing, compiled as C like the Arduino builder does
    cc = [GCC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", str(sk / "selfmis_frame.c"),
          "-o", str(obj)]
    cxx = [GXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
           f"-I{tmp_path}", f"-I{sk}", f'-DSKETCH="{sketch}.ino"', *defines,
           "-x", "c++", str(tmp_path / "harness.cpp"), "-x", "none", str(obj), "-o", str(exe)]
    for cmd in (cc, cxx):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr[-3000:]}"
    return exe


@pytest.fixture(scope="module")
def adc_input(tmp_path_factory):
    """6 s of lead I as 12-bit ADC readings around mid-scale, lead-off from 2.0 to 2.5 s."""
    from selfmis.readers import read_record
    path = default_record_path()
    if path is None:
        pytest.skip("no bundled sample record")
    uv = 3300.0 * 1000 / 4096 / 1100
    lead = read_record(path).lead("I")
    counts = np.clip(np.rint(np.resize(lead, 1500) * 1000 / uv), -2048, 2047).astype(int)
    lo = np.zeros(1500, dtype=int)
    lo[500:625] = 1  # at the sketch's 250 Hz: 2.0 .. 2.5 s
    f = tmp_path_factory.mktemp("adc") / "adc.txt"
    f.write_text("\n".join(f"{c + 2048} {o}" for c, o in zip(counts, lo)))
    return f, counts, lo


def test_sketches_carry_identical_copies_of_the_c_framing():
    for sketch in ("ad8232_serial", "ad8232_ble"):
        for name in ("selfmis_frame.c", "selfmis_frame.h"):
            assert filecmp.cmp(ROOT / "c" / name, ROOT / "firmware" / sketch / name, shallow=False), \
                f"firmware/{sketch}/{name} differs from c/{name}: copy it again"


def _expected(counts, lo):
    return np.where(lo == 1, 0, counts)


@needs_gxx
def test_serial_sketch_framed_output_decodes(tmp_path, adc_input):
    f, counts, lo = adc_input
    exe = _build(tmp_path, "ad8232_serial")
    out = subprocess.run([str(exe), str(f)], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    dec = P.StreamDecoder()
    msgs = dec.feed(out.stdout) + dec.flush()
    assert not [m for m in msgs if isinstance(m, P.DecodeError)]
    hellos = [m for m in msgs if isinstance(m, P.Hello)]
    assert len(hellos) == 2  # at start and after 5 s
    assert hellos[0].fs_hz == 250 and hellos[0].lead == "I"
    assert hellos[0].uv_per_lsb == pytest.approx(0.7324, abs=1e-4)
    frames = [m for m in msgs if isinstance(m, P.DataFrame)]
    assert [fr.seq for fr in frames] == list(range(60))
    np.testing.assert_array_equal(np.concatenate([fr.samples for fr in frames]), _expected(counts, lo))
    assert [fr.lead_off for fr in frames] == [20 <= k < 25 for k in range(60)]


@needs_gxx
def test_serial_sketch_ascii_output_decodes(tmp_path, adc_input):
    f, counts, lo = adc_input
    exe = _build(tmp_path, "ad8232_serial", ["-DOUTPUT_ASCII=1"])
    out = subprocess.run([str(exe), str(f)], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    items = ascii_sketch.AsciiLineDecoder().feed(out.stdout)
    assert isinstance(items[0], ascii_sketch.AsciiHeader) and items[0].fs_hz == 250 and items[0].lead == "I"
    body = [x for x in items if not isinstance(x, ascii_sketch.AsciiHeader)]
    assert not [x for x in body if isinstance(x, P.DecodeError)]
    got = np.array([0 if isinstance(x, ascii_sketch.LeadOff) else x for x in body])
    np.testing.assert_array_equal(got, _expected(counts, lo))
    assert [isinstance(x, ascii_sketch.LeadOff) for x in body] == list(lo == 1)


@needs_gxx
def test_ble_sketch_notifications_reassemble(tmp_path, adc_input):
    f, counts, lo = adc_input
    exe = _build(tmp_path, "ad8232_ble", ["-DWITH_BLE"])
    out = subprocess.run([str(exe), str(f)], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # MTU 23: every notification carries at most 20 bytes, so 68-byte frames were split
    assert "max=20" in out.stderr.decode()
    dec = P.StreamDecoder()
    msgs = dec.feed(out.stdout) + dec.flush()
    assert not [m for m in msgs if isinstance(m, P.DecodeError)]
    assert isinstance(msgs[0], P.Hello) and msgs[0].device_id.startswith("esp32-")
    frames = [m for m in msgs if isinstance(m, P.DataFrame)]
    assert [fr.seq for fr in frames] == list(range(60))
    np.testing.assert_array_equal(np.concatenate([fr.samples for fr in frames]), _expected(counts, lo))


@needs_gxx
def test_serial_sketch_avr_branch(tmp_path, adc_input):
    """The Uno/Nano code path: Timer1 CTC set-up, 10-bit ADC scale."""
    f, counts, lo = adc_input
    c10 = np.clip(counts, -512, 511)
    f10 = tmp_path / "adc10.txt"
    f10.write_text("\n".join(f"{c + 512} {o}" for c, o in zip(c10, lo)))
    exe = _build(tmp_path, "ad8232_serial", ["-DSTUB_AVR"])
    out = subprocess.run([str(exe), str(f10)], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    dec = P.StreamDecoder()
    msgs = dec.feed(out.stdout) + dec.flush()
    hello = msgs[0]
    assert isinstance(hello, P.Hello) and hello.device_id == "avr"
    assert hello.uv_per_lsb == pytest.approx(5000 * 1000 / 1024 / 1100, rel=1e-6)
    frames = [m for m in msgs if isinstance(m, P.DataFrame)]
    np.testing.assert_array_equal(np.concatenate([fr.samples for fr in frames]), _expected(c10, lo))
