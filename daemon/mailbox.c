/* A mutex-protected FIFO drained by the libwebsockets thread. */
#include "mailbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include <libwebsockets.h>

struct mailbox {
        pthread_mutex_t lock;
        struct mail *head, *tail;
        struct lws_context *ctx;
        bool woken; /* a wake-up is in flight: later posts need not send another */
};

int mailbox_new(struct mailbox **ret)
{
        struct mailbox *mb = calloc(1, sizeof(*mb));
        if (!mb)
                return -ENOMEM;
        pthread_mutex_init(&mb->lock, NULL);
        *ret = mb;
        return 0;
}

void mailbox_free(struct mailbox *mb)
{
        if (!mb)
                return;
        pthread_mutex_destroy(&mb->lock);
        free(mb);
}

void mailbox_set_context(struct mailbox *mb, struct lws_context *ctx)
{
        pthread_mutex_lock(&mb->lock);
        mb->ctx = ctx;
        mb->woken = false;
        pthread_mutex_unlock(&mb->lock);
        if (ctx)
                lws_cancel_service(ctx);
}

/* The wake is made under the lock: once mailbox_set_context(NULL) has returned,
 * no other thread touches the context, which the loop thread then destroys. */
void mailbox_post(struct mailbox *mb, struct mail *m)
{
        m->next = NULL;
        pthread_mutex_lock(&mb->lock);
        if (mb->tail)
                mb->tail->next = m;
        else
                mb->head = m;
        mb->tail = m;
        if (!mb->woken && mb->ctx) {
                mb->woken = true;
                lws_cancel_service(mb->ctx);
        }
        pthread_mutex_unlock(&mb->lock);
}

void mailbox_wake(struct mailbox *mb)
{
        pthread_mutex_lock(&mb->lock);
        if (mb->ctx)
                lws_cancel_service(mb->ctx);
        pthread_mutex_unlock(&mb->lock);
}

unsigned mailbox_drain(struct mailbox *mb)
{
        unsigned n = 0;

        for (;;) {
                pthread_mutex_lock(&mb->lock);
                struct mail *m = mb->head;
                mb->head = mb->tail = NULL;
                mb->woken = false;
                pthread_mutex_unlock(&mb->lock);
                if (!m)
                        return n;
                while (m) {
                        struct mail *next = m->next;
                        m->fn(m);
                        m = next;
                        n++;
                }
        }
}
