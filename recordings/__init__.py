"""Call recordings for quality review: MixMonitor per operator leg with pause/resume,
the after-call file check, retention, and the review room (player, comments, QA score
cards) with its audited HTTP API. May import bridge.calls, bridge.ami, bridge.call_log
and web.
"""
