/* Instructions per function, from QEMU's `-singlestep -d exec,nochain` trace (see trace_count.c).
 *
 *   trace_profile SYMBOLS PUSH_BEGIN PUSH_END SCORE_BEGIN SCORE_END MODEL_BEGIN MODEL_END < trace
 *
 * SYMBOLS: a file of "start_hex size_hex name" lines (the ELF's functions, `nm -S`), any order.
 * Each executed instruction inside a push is charged to the function whose range holds its pc
 * (code the compiler inlined counts for the function it was inlined into) and to one of three
 * phases: the model (between the model markers), the rest of a scored beat (between the score
 * markers: window band-pass, z-score, int8, calibration, decision), or the rest of the push.
 * Prints first trace_count's totals, "T total push score model n_push n_score n_model" (the score
 * and model counts there, as in trace_count, also cover the end-of-stream flush), then one line per
 * function that executed in a push: "F name outside score model". An instruction count, not a
 * cycle count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXF 4096

typedef struct { unsigned long lo, hi; char name[96]; unsigned long long n[3]; } fn;
static fn f[MAXF];
static int nf;

static int by_lo(const void *a, const void *b) {
  unsigned long x = ((const fn *)a)->lo, y = ((const fn *)b)->lo;
  return x < y ? -1 : x > y;
}

static int find(unsigned long pc) {
  int lo = 0, hi = nf - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (pc < f[mid].lo) hi = mid - 1;
    else if (pc >= f[mid].hi) lo = mid + 1;
    else return mid;
  }
  return -1;
}

int main(int argc, char **argv) {
  unsigned long mark[6], pc;
  unsigned long long other[3] = {0, 0, 0}, total = 0, in[3] = {0, 0, 0}, entries[3] = {0, 0, 0};
  int in_push = 0, in_score = 0, in_model = 0, i;
  char line[512];
  FILE *s;
  if (argc != 8) { fprintf(stderr, "usage: trace_profile SYMBOLS 6 marker addresses (hex) < trace\n"); return 2; }
  if (!(s = fopen(argv[1], "r"))) { perror(argv[1]); return 2; }
  while (nf < MAXF && fgets(line, sizeof line, s)) {
    unsigned long a, n;
    char name[96];
    if (sscanf(line, "%lx %lx %95s", &a, &n, name) != 3 || !n) continue;
    f[nf].lo = a & ~1ul;
    f[nf].hi = (a & ~1ul) + n;
    strcpy(f[nf].name, name);
    nf++;
  }
  fclose(s);
  qsort(f, nf, sizeof f[0], by_lo);
  for (i = 0; i < 6; i++) mark[i] = strtoul(argv[i + 2], 0, 16) & ~1ul;
  while (fgets(line, sizeof line, stdin)) {
    char *p = strchr(line, '[');
    int k, ph;
    if (strncmp(line, "Trace", 5) || !p || !(p = strchr(p, '/'))) continue;
    pc = strtoul(p + 1, 0, 16);
    total++;
    if (pc == mark[0]) { in_push = 1; entries[0]++; } else if (pc == mark[1]) in_push = 0;
    if (pc == mark[2]) { in_score = 1; entries[1]++; } else if (pc == mark[3]) in_score = 0;
    if (pc == mark[4]) { in_model = 1; entries[2]++; } else if (pc == mark[5]) in_model = 0;
    in[0] += in_push;
    in[1] += in_score;
    in[2] += in_model;
    if (!in_push) continue;
    ph = in_model ? 2 : (in_score ? 1 : 0);
    k = find(pc);
    if (k < 0) other[ph]++;
    else f[k].n[ph]++;
  }
  printf("T %llu %llu %llu %llu %llu %llu %llu\n", total, in[0], in[1], in[2], entries[0], entries[1], entries[2]);
  for (i = 0; i < nf; i++)
    if (f[i].n[0] + f[i].n[1] + f[i].n[2])
      printf("F %s %llu %llu %llu\n", f[i].name, f[i].n[0], f[i].n[1], f[i].n[2]);
  if (other[0] + other[1] + other[2]) printf("F (unknown) %llu %llu %llu\n", other[0], other[1], other[2]);
  return 0;
}
