/* host build: the instruction-count markers do nothing */
void smx_mark(int what) { (void)what; }
