/* What the tests of part_file.c may change. */
#pragma once

#include <stdbool.h>

/* When true, a part's file is created under its hidden name from the start, as on
 * a filesystem without O_TMPFILE, so the tests take that path on any machine. */
extern bool ctl_part_file_named_from_start;
