/* Count the instructions QEMU executes, from its `-singlestep -d exec,nochain` trace.
 *
 * With -singlestep every translation block is one guest instruction, and `exec` logs one
 * line per executed block: "Trace 0: 0x<host> [<flags>/<guest pc>/<...>/<...>] <symbol>".
 * Reads that log (a FIFO: it is gigabytes) and counts all instructions and those between the
 * marker functions' entries (qemu/marks.c), whose addresses are given on the command line:
 *   trace_count PUSH_BEGIN PUSH_END SCORE_BEGIN SCORE_END MODEL_BEGIN MODEL_END < trace
 * Prints: total push score model n_push n_score n_model
 * This is an instruction count, not a cycle count (see firmware_bridge/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  unsigned long mark[6], pc;
  unsigned long long total = 0, in[3] = {0, 0, 0}, entries[3] = {0, 0, 0};
  int state[3] = {0, 0, 0}, i;
  char line[512];
  if (argc != 7) { fprintf(stderr, "usage: trace_count 6 marker addresses (hex)\n"); return 2; }
  for (i = 0; i < 6; i++) mark[i] = strtoul(argv[i + 1], 0, 16) & ~1ul;
  while (fgets(line, sizeof line, stdin)) {
    char *p = strchr(line, '[');
    if (strncmp(line, "Trace", 5) || !p || !(p = strchr(p, '/'))) continue;
    pc = strtoul(p + 1, 0, 16);
    total++;
    for (i = 0; i < 3; i++) {
      if (pc == mark[2 * i]) { state[i] = 1; entries[i]++; }
      else if (pc == mark[2 * i + 1]) state[i] = 0;
      if (state[i]) in[i]++;
    }
  }
  printf("%llu %llu %llu %llu %llu %llu %llu\n", total, in[0], in[1], in[2], entries[0], entries[1], entries[2]);
  return 0;
}
