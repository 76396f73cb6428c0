"""The supervisor's wallboard and live control: the live picture of queues, operators and
calls (`queue_board`, `models`), alerts, ChanSpy listen/whisper/barge and queue actions
(`pbx_actions`, `supervisor_actions`), their service, settings and HTTP/WebSocket routes.
May import bridge.calls, bridge.ami, bridge.call_log and web; not screenpop or recordings.
"""
