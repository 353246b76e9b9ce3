/* Jobs' stored inputs ("inputs"): the input arrays of a job, written with its submit so
 * that a job recovered after a restart runs on what was accepted. Pieces like results,
 * under (job id, piece). */
#include <errno.h>

#include "store_impl.h"

/* Stores the input of `id`; see store.h. */
int store_input_put(struct store_txn *t, const uint8_t id[16], size_t size, store_result_writer write,
                    void *opaque)
{
        return store_pieces_put(t, t->s->inputs, id, 16, size, write, opaque);
}

/* Copies the input of `id` out; see store.h. */
int store_input_get(struct store_txn *t, const uint8_t id[16], uint8_t **ret_data, size_t *ret_size)
{
        if (t->err < 0)
                return t->err;
        return store_pieces_get(t, t->s->inputs, id, 16, ret_data, ret_size);
}

/* Deletes the input of `id`, if any; see store.h. */
int store_input_delete(struct store_txn *t, const uint8_t id[16])
{
        int r;

        if (t->err < 0)
                return t->err;
        r = store_pieces_delete(t, t->s->inputs, id, 16);
        return r < 0 ? r : 0;
}
