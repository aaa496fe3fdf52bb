"""The exactly-once plumbing between Faust and the stages: every number counted once.

Faust (faust-streaming 0.15.3) gives at-least-once delivery, and less around
rebalances: messages it fetched can be dropped, repeated or handed over while their
tables are still being restored. The stages (intake, funnel, merge) are written as if
each partition's messages arrived once, in offset order, to a worker that owns the
partition's whole state, and were acknowledged only after the state they produced was
on the broker. These four modules make that true, in the order a message meets them:

1. ``batches`` — messages are taken in batches whose linger follows the backlog, closed
   by count or bytes; a batch's offsets are acked only when the next batch is asked for,
   that is after the stage has written the batch's state (Faust flushes its producer
   before it commits, so a committed offset never runs ahead of its state).
2. ``order`` — the offset guard: each partition's messages in offset order, once each;
   a message Faust lost (a *hole*) is read back with a private client and handed over
   first; a partition stuck behind its log end is sought back.
3. ``ownership`` — the gate: a batch waits while Faust rebalances or restores tables,
   keeps only partitions still assigned here, and a revocation waits for the batch under
   way, so no restore overwrites fresh counts and no late write lands after the new
   owner's.
4. ``delivery`` — a send whose future failed (a changelog record, a forward, a dead
   letter, a snapshot) stops the worker before it commits: the restart reads the input
   again, and the replay marks make the second reading harmless.

What these cannot do alone is make a *replayed* message harmless: that is the state's
job. Every pane stores, in the same changelog record as its counts, the last source
offset per topic it holds (``streams.pane_values``), and every "first" (an event id, a lead
stage, a customer) remembers where it was first seen (``streams.dedup``), so a message
read twice is recognised as a replay, and a re-sent event as a duplicate. The fault
tests (``make test-faults``: kill -9, broker restarts, two workers, SIGTERM) check the
whole against an independent recount.
"""
