/* The one way other threads talk to the libwebsockets thread.
 *
 * Workers and the store writer post `struct mail` nodes (embedded in their own
 * objects); the loop thread runs each node's function in order when libwebsockets
 * raises LWS_CALLBACK_EVENT_WAIT_CANCELLED (NOTES.md: lws_cancel_service() is the
 * only lws call that is safe from another thread). */
#pragma once

struct lws_context;

struct mail {
        struct mail *next;
        void (*fn)(struct mail *m);
};

struct mailbox;

/* Returns >= 0 or -ENOMEM. */
int mailbox_new(struct mailbox **ret);
/* Accepts NULL. Mail still queued is dropped without running. */
void mailbox_free(struct mailbox *mb);
/* The context to wake; until it is set, posts only queue. */
void mailbox_set_context(struct mailbox *mb, struct lws_context *ctx);
/* Queues `m` and wakes the loop (once per batch). Any thread; never blocks long. */
void mailbox_post(struct mailbox *mb, struct mail *m);
/* Wakes the loop, if it has a context, with nothing to run (a signal to look at).
 * Any thread. */
void mailbox_wake(struct mailbox *mb);
/* Runs every queued mail, oldest first, on the calling (loop) thread. Returns how
 * many ran. */
unsigned mailbox_drain(struct mailbox *mb);
