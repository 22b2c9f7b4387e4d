"""Side effects outside the chat: rows the store's outbox holds (:mod:`cschat.store.outbox`),
delivered by a background worker with retries (:mod:`~cschat.outbox.worker`) — webhooks
(:mod:`~cschat.outbox.webhooks`) for now."""
