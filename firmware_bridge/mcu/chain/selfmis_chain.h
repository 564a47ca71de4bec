/* SelfMIS Edge on a microcontroller: the gateway's whole decision chain in C99.
 *
 *   Lead I samples (mV, the device's rate)
 *     -> hold & fill (lead-off, NaN)           edge_runtime/pipeline.py  Pipeline._chunk
 *     -> resampling to the model rate           core/preprocess.py        StreamResampler (primed)
 *     -> quality gate on 1-s blocks             edge_runtime/quality.py   QualityGate
 *     -> online R peaks                         edge_runtime/beats.py     StreamingBeatDetector
 *     -> beat window, band-pass, z-score        core/preprocess.py        preprocess_window
 *     -> int8 quantisation, the model           edge_runtime/interpreter.py (smx_model_invoke)
 *     -> the card's calibration                 core/bundle.py            ModelCard.probabilities
 *     -> rolling median, operating point,       edge_runtime/decision.py  RollingDecision, AlarmState
 *        persistent alarm (onset/ongoing/cleared)
 *
 * No heap: one smx_chain struct holds every buffer (its size is fixed at generation,
 * sizeof(smx_chain) is what it costs). Parameters come from smx_chain_params.h, generated
 * from a bundle by `python -m selfmis.firmware_bridge.c_chain` for ONE input rate;
 * smx_chain_init refuses any other rate.
 *
 * Arithmetic: float32 for the signal path (the Cortex-M4F FPU is single precision; the
 * gateway computes the filters in float64), double for the per-beat calibration and
 * decision (a few dozen operations per beat, software double on the M4F) and for the
 * quality statistics (exactly as the gateway). Host and target builds give identical
 * output when both are compiled with -ffp-contract=off (no fused multiply-add) and no
 * -ffast-math: every operation is IEEE-754 and no libm function is used.
 */
#ifndef SELFMIS_CHAIN_H
#define SELFMIS_CHAIN_H

#include <stdint.h>
#include "smx_chain_params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef float smx_real;
typedef struct { smx_real r, i; } smx_cpx;

enum {
  SMX_OK = 0,
  SMX_ERR_RATE = 1,       /* init with a rate the parameters were not generated for */
  SMX_ERR_CHUNK = 2,      /* a push longer than the buffers hold: split it */
  SMX_ERR_OVERFLOW = 3,   /* an internal buffer would overflow: the chain stops deciding */
  SMX_ERR_MODEL = 4,      /* the model returned an error */
  SMX_ERR_STATE = 5       /* used after an error without smx_chain_init */
};

/* per-chunk flags (smx_chain_push) */
#define SMX_LEAD_OFF 1u   /* the front end reports an electrode off (AD8232 LO+/LO-) */
#define SMX_SATURATED 4u  /* the samples sit at the ADC rails */

/* quality reasons (bit mask), as edge_runtime/quality.py REASONS */
#define SMX_Q_LEAD_OFF 1u
#define SMX_Q_GAP 2u
#define SMX_Q_SATURATION 4u
#define SMX_Q_FLAT 8u
#define SMX_Q_NOISE 16u

/* alarm state of a label at a decision */
enum { SMX_STATE_OFF = 0, SMX_STATE_ONSET = 1, SMX_STATE_ONGOING = 2, SMX_STATE_CLEARED = 3 };

enum { SMX_EV_BEAT = 1, SMX_EV_DECISION = 2, SMX_EV_QUALITY = 3, SMX_EV_WINDOW = 4 };

typedef struct {
  int type;                    /* SMX_EV_* */
  int32_t r;                   /* R peak (beat, decision, window): sample index at the model rate */
  double t;                    /* seconds of signal (resampler delay removed), as the gateway's "t" */
  double rr, hr;               /* beat: RR (s) and heart rate (bpm); < 0 when unknown */
  uint32_t quality;            /* quality: SMX_Q_* of the block starting at r */
  /* decision */
  double p[SMX_N_LABELS];      /* rolling median of the calibrated probabilities */
  uint16_t active;             /* labels whose alarm is on (bit j = label j) */
  uint8_t state;               /* SMX_STATE_* of the primary label (label 0, MI) */
  uint8_t states[SMX_N_LABELS];
  uint8_t n_beats;             /* beats in the median */
  const int8_t *window;        /* SMX_EV_WINDOW: the quantised model input (SMX_W bytes) */
  const int8_t *logits_q;      /* SMX_EV_WINDOW: the model's int8 output */
} smx_event;

typedef void (*smx_event_fn)(void *user, const smx_event *ev);

/* ---- the beat detector (selfmis_detect.c): beats.py StreamingBeatDetector in integers ---- */
typedef struct { int32_t i; int64_t p; int32_t slope, r; } smx_det_cand;  /* envelope index, height, slope, R */

typedef struct {
  int32_t n;                           /* samples pushed */
  int32_t qa[SMX_DET_A], pa, pm;       /* the band-pass's running sums and their rings (filter()) */
  int64_t s1a[SMX_DET_A], s2m[SMX_DET_M], s1, s2, s3;
  int64_t y_prev, msum, e_ring[SMX_DET_WIN];
  int32_t e_pos;
  int32_t y[SMX_DET_RING], ad[SMX_DET_RING];  /* band-passed, |first difference| */
  int64_t m[SMX_DET_RING];             /* envelope: moving sum of the squared difference */
  smx_det_cand queue[SMX_DET_QCAP], noise[SMX_DET_NCAP];
  int32_t qhead, nq, nn;
  int32_t pending[SMX_DET_PCAP], np;
  int learned, has_last;
  int64_t spk, npk;
  int32_t last_i, last_slope, last_r, sb_base;
  int32_t rr[8], nrr, sb_span;        /* last 8 RR intervals; 166 * their mean // 100 */
} smx_detector;

/* ---- the whole chain ---- */
typedef struct {
  int error;                   /* SMX_OK or the first error; a chain in error decides nothing */
  smx_event_fn cb;
  void *user;
  /* hold & fill */
  int has_last_good;
  float last_good;
  /* resampler */
  int primed;
  int32_t discard, rs_n_in, rs_m_out, n_in;
  int32_t rs_sq, rs_sr, rs_n0, rs_ph;  /* counters of rs_process (see there) */
  smx_real rs_hist[2 * SMX_RS_K];  /* the last K inputs, written twice: a window is always contiguous */
  int32_t rs_pos;
  /* model-rate signal ring (the last SMX_RING samples) and its flags */
  smx_real ring[SMX_RING];
  uint8_t ring_flags[SMX_RING];
  int32_t n, buf_start;        /* samples so far; the gateway's buffer start (history rule) */
  /* quality gate */
  smx_real q_block[SMX_Q_BLOCK];
  uint8_t q_flags[SMX_Q_BLOCK];
  int32_t q_pending, q_n_done;
  uint8_t q_verdict[SMX_Q_KEEP + 2];
  int32_t q_verdict_idx[SMX_Q_KEEP + 2];
  int q_state;                 /* reasons of the last block, -1 before the first */
  int bad;
  /* beats */
  smx_detector det;
  int32_t det_offset, last_r, last_beat;
  double rr[5];
  int n_rr;
  int32_t eligible;
  /* decision */
  double hist[SMX_N_BEATS][SMX_N_LABELS];
  int32_t filled;
  uint8_t alarm_on[SMX_N_LABELS];
  int since_set[SMX_N_LABELS];
  double since[SMX_N_LABELS];
  int32_t count[SMX_N_LABELS];
  /* scratch: the window band-pass FFT, float views of the same memory (f.y overlays fft.a,
   * f.x overlays fft.b); SMX_FFT_CPX = the FFT length, or half of it plus one when it is even
   * (a real-input FFT of half the length) */
  union {
    struct { smx_cpx a[SMX_FFT_CPX], b[SMX_FFT_CPX]; } fft;
    struct { smx_real y[2 * SMX_FFT_CPX], x[2 * SMX_FFT_CPX]; } f;
  } s;
  int8_t qwin[SMX_W];
  int8_t qout[SMX_N_LABELS + 8];
  int32_t n_beats_total, n_decisions;
  int flushed;
} smx_chain;

/* Start (or restart) the chain for samples at fs_in Hz. Returns SMX_ERR_RATE, with
 * smx_chain_error_text saying which rate it was generated for, when fs_in differs. */
int smx_chain_init(smx_chain *c, double fs_in, smx_event_fn cb, void *user);

/* n consecutive samples (mV) of one chunk, flags SMX_LEAD_OFF / SMX_SATURATED for the whole
 * chunk; a NaN sample is a lost one (held at the last good value, flagged as a gap). Events
 * arrive through the callback before it returns. Feeding one sample at a time is the device's
 * way; a chunk of n gives what the gateway gives for a chunk of n. Returns SMX_OK or the error. */
int smx_chain_push(smx_chain *c, const float *x, int n, unsigned flags);

/* End of a finite stream: pushes the resampler's delay out with the last value, as the
 * gateway's Pipeline.flush does, so the last beats get their windows. */
int smx_chain_flush(smx_chain *c);

const char *smx_chain_error_text(int err);

/* ---- internals shared by the library's files ---- */
/* per-sample flags of the model-rate signal */
#define SMX_F_LEAD_OFF 1u
#define SMX_F_GAP 2u
#define SMX_F_SAT 4u
/* quality.py assess_block of n samples and their flags: SMX_Q_* (selfmis_quality.c) */
uint32_t smx_assess(const smx_real *x, const uint8_t *fl, int n);
void smx_det_reset(smx_detector *d);
/* push n samples; R peaks (global indices) into out (at most max_out); returns their count
 * or -1 on overflow */
int smx_det_push(smx_detector *d, const smx_real *x, int n, int32_t *out, int max_out);
/* c->s.f.y[0..nfft) = real(irfft(rfft(x zero-padded to nfft) * gain)) for x = c->s.f.x[0..n)
 * (gain: n_gain values, zero beyond); numpy's rfft/irfft pair */
void smx_fft_filter(smx_chain *c, int n, int nfft, const smx_real *gain, int n_gain);
extern const smx_cpx smx_bp_tw[];  /* exp(-2 pi i k / SMX_BP_M), k <= SMX_BP_M / 2 (generated) */
double smx_exp(double x);
smx_real smx_sqrt(smx_real x);
double smx_sqrt_d(double x);
void smx_sort_d(double *v, int n);
void smx_sort_f(smx_real *v, int n);

#ifdef __cplusplus
}
#endif
#endif
