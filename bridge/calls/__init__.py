"""The pure call model: AMI events in, calls and domain events out, no I/O.

`tracker.CallTracker` (with one rule module per concern: queues, transfers, pickups,
recordings, outages, inert events), the records and events that leave it (`record`,
`events`), resync from a live-channel list, and the pipeline that runs events through the model to
subscribers (live, or offline in `replay`). May import only bridge.ami (the message type).
"""
