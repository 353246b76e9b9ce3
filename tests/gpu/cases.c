/* test_backend_ops --check-cases: every parity case, and one job of every benchmark
 * size step, passes its kind's checks of a job (kiln_kind_check: the inputs
 * against the specs, the object, the kind's check), as a backend's prepare does.
 * A case the kind refuses is timed or compared as a failure on the GPU machine
 * only, where it is hard to tell from a fault of the kernel; here it is found on
 * every machine, without a GPU. The cases' typed parameters are made directly, so
 * the schema's ranges (which kilnd checks on the JSON) are not checked here. */
#include <errno.h>
#include <stdio.h>

#include "kind_tests.h"

int check_cases(void);

static int check_set(const struct kiln_kind *kind, const char *set, const struct kiln_cases *cs)
{
        int bad = 0;

        for (size_t i = 0; i < cs->n; i++) {
                const struct kiln_case *c = &cs->cases[i];
                struct kiln_error err = { { 0 }, { 0 } };
                if (kiln_kind_check(kind, c->params, c->inputs, c->n_inputs, c->object, &err) < 0) {
                        printf("%-14s %s case %zu (%s): refused: %s: %s\n", kind->name, set, i, c->label, err.field,
                               err.message);
                        bad++;
                }
        }
        return bad;
}

int check_cases(void)
{
        int bad = 0, checked = 0;

        for (size_t k = 0; kiln_kind_tests[k]; k++) {
                const struct kiln_kind_tests *kt = kiln_kind_tests[k];
                struct kiln_cases *cs = NULL;
                if (kt->parity(&cs) < 0) {
                        printf("%-14s parity cases: could not be made\n", kt->kind->name);
                        bad++;
                } else {
                        bad += check_set(kt->kind, "parity", cs);
                        checked += (int)cs->n;
                        kiln_cases_free(cs);
                }
                for (unsigned size = 0;; size++) {
                        int r = kt->bench(size, 1, &cs);
                        if (r == -ERANGE)
                                break;
                        if (r < 0) {
                                printf("%-14s bench size %u: could not be made\n", kt->kind->name, size);
                                bad++;
                                break;
                        }
                        bad += check_set(kt->kind, "bench", cs);
                        checked += (int)cs->n;
                        kiln_cases_free(cs);
                }
        }
        printf("%d cases checked, %d refused\n", checked, bad);
        return bad ? 1 : 0;
}
