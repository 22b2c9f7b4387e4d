"""The outbox worker: delivers what the store's outbox holds, retrying with backoff.

It runs beside the chat, never on its path: a commit that wrote outbox rows
(or stored messages a webhook wants) only wakes it, and it makes the rows
of message.created from the stored messages as it needs them. A row stays
pending until the result of an attempt is committed, so a crash or a
restart sends it again (at least once); rows of one target and ordering key
go one at a time, in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable

from cschat.logs import ThrottledLog
from cschat.store import Store, now_ms
from cschat.store.outbox import Outcome

log = logging.getLogger("cschat.outbox")

PRUNE_SECONDS = 3600
IDLE_SECONDS = 60  # looks again at least this often, whatever it was told
ERROR_PAUSE_SECONDS = 1.0
MAX_ERROR_LENGTH = 500
BEHIND_PAUSE_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class Attempt:
    """How one delivery went: ``ok``, the answer's ``status`` (None when there was
    none), and what went wrong."""

    ok: bool
    status: int | None = None
    error: str | None = None
    permanent: bool = False  # trying again cannot help: fail it now


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When to try again: ``first`` seconds after the first failure, twice as long after
    each further one, at most ``longest``; no attempt later than ``give_up_after``
    seconds after the row was written."""

    first: int
    longest: int
    give_up_after: int

    def next_attempt_ms(self, created_ms: int, attempts: int, now: int) -> int | None:
        """When to try again after ``attempts`` failures, or None to give up."""
        delay = min(self.longest, self.first * 2 ** min(attempts - 1, 40))
        # A little jitter, so that deliveries failed together do not retry together.
        at = now + int(delay * 1000 * random.uniform(0.9, 1.0))
        return None if at > created_ms + self.give_up_after * 1000 else at


class OutboxWorker:
    """Delivers the outbox rows of one ``kind`` with ``deliver(row, targets)``.

    ``deliver`` never raises: it returns an :class:`Attempt`; ``targets`` are
    the webhooks the round's rows go to, read with them (a deleted webhook's
    rows are deleted with it, so they are never tried). ``on_attempt`` is told
    of every attempt (for the metrics). Start with :meth:`start`, stop with
    :meth:`stop`.
    """

    def __init__(self, store: Store, kind: str,
                 deliver: Callable[[dict, dict], Awaitable[Attempt]], policy: RetryPolicy,
                 concurrency: int, keep_days: int,
                 on_attempt: Callable[[bool], None] = lambda ok: None):
        self.store, self.kind, self._deliver = store, kind, deliver
        self.policy, self.concurrency, self.keep_days = policy, concurrency, keep_days
        self._on_attempt = on_attempt
        self._task: asyncio.Task | None = None
        self._written = asyncio.Event()
        store.outbox_listeners.append(self._written)
        self._failures = ThrottledLog(log)
        self._pruned_at = 0
        # The last round's outcomes, recorded in the next round's unit of the writer.
        self._outcomes: list[Outcome] = []

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop, recording the outcomes of the last round (the store is still open)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._outcomes:
            try:
                await self.store.record_attempts(self._outcomes)
            except Exception as error:  # noqa: BLE001 - they are sent again after a restart
                log.warning("the last outbox attempts were not recorded: %s", error)

    async def _run(self) -> None:
        while True:
            try:
                wait = await self._round()
            except Exception as error:  # noqa: BLE001 - a failing disk: try again shortly
                self._failures.error("outbox round failed: %s", error)
                wait = ERROR_PAUSE_SECONDS
            if wait:
                try:
                    await asyncio.wait_for(self._written.wait(), wait)
                except TimeoutError:
                    pass

    async def _round(self) -> float:
        """Deliver what is due; return how long to wait for more (0: look again now)."""
        self._written.clear()
        if now_ms() - self._pruned_at > PRUNE_SECONDS * 1000:
            self._pruned_at = now_ms()
            await self.store.prune_outbox(self._pruned_at - self.keep_days * 86_400_000)
        found = await self.store.outbox_round(self.kind, self._outcomes, self.concurrency)
        self._outcomes = []
        if not found.due:
            wait = IDLE_SECONDS if found.next_due is None else \
                min(IDLE_SECONDS, max(0.0, (found.next_due - now_ms()) / 1000))
            # Messages still to take while nothing is due (their conversations wait for a
            # retry, a receiver is down): look again within a second, not at once, so
            # that such a backlog stays in the messages instead of growing the outbox.
            return min(wait, BEHIND_PAUSE_SECONDS) if found.behind else wait
        attempts = await asyncio.gather(*(self._attempt(row, found.targets)
                                          for row in found.due))
        now = now_ms()
        for row, attempt in zip(found.due, attempts, strict=True):
            self._on_attempt(attempt.ok)
            next_at = None if attempt.ok or attempt.permanent else \
                self.policy.next_attempt_ms(row["created_at"], row["attempts"] + 1, now)
            state = "delivered" if attempt.ok else ("pending" if next_at else "failed")
            error = attempt.error[:MAX_ERROR_LENGTH] if attempt.error else None
            self._outcomes.append((row["id"], state, next_at or now, attempt.status, error))
            if state == "failed":
                log.warning("outbox row %d (%s) failed for good: %s", row["id"], row["event"],
                            error)
        return 0

    async def _attempt(self, row: dict, targets: dict) -> Attempt:
        """``deliver``'s attempt; whatever it raises fails this row alone, for good, so
        that one row cannot stop the others behind it."""
        try:
            return await self._deliver(row, targets)
        except Exception as error:  # noqa: BLE001 - recorded on the row, and logged
            log.exception("outbox row %d cannot be delivered", row["id"])
            return Attempt(False, None, f"{type(error).__name__}: {error}", permanent=True)
