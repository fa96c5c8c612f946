#include "fuzz.h"
FUZZ_TARGET(placeholder) { (void)data; (void)size; (void)fuzz_arena; }
