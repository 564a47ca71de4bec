/* smx_model_host.c -- run a generated plain-C model on the host: int8 windows in, int8 outputs out.
 *
 * Reads raw int8 windows of SMX_MODEL_INPUT_LEN bytes from stdin (or the file named by argv[1]) until end
 * of input, and writes SMX_MODEL_OUTPUT_LEN int8 bytes per window to stdout. Used by the parity tests
 * (tests/test_wearable_model.py) against TFLite Micro and LiteRT. Build:
 *   gcc -std=c99 -O2 -I OUT smx_model_host.c OUT/smx_model.c OUT/selfmis_kernels.c -o smx_model_host
 * Exit: 0 done, 1 a short (partial) last window, 2 a read/write error, 3 invoke failed.
 */
#include <stdio.h>
#include <stdint.h>

#include "smx_model.h"

int main(int argc, char **argv)
{
    static int8_t in[SMX_MODEL_INPUT_LEN];
    static int8_t out[SMX_MODEL_OUTPUT_LEN];
    FILE *f = stdin;
    unsigned long windows = 0;
    size_t got;
    if (argc > 1 && (f = fopen(argv[1], "rb")) == NULL) {
        perror(argv[1]);
        return 2;
    }
    while ((got = fread(in, 1, sizeof in, f)) == sizeof in) {
        if (smx_model_invoke(in, out) != 0) {
            fprintf(stderr, "window %lu: invoke failed\n", windows);
            return 3;
        }
        if (fwrite(out, 1, sizeof out, stdout) != sizeof out) {
            perror("stdout");
            return 2;
        }
        windows++;
    }
    if (ferror(f)) {
        perror("input");
        return 2;
    }
    if (got != 0) {
        fprintf(stderr, "a partial window of %lu bytes after %lu windows (expected %d per window)\n",
                (unsigned long)got, windows, SMX_MODEL_INPUT_LEN);
        return 1;
    }
    fprintf(stderr, "%lu windows\n", windows);
    return fflush(stdout) == 0 ? 0 : 2;
}
