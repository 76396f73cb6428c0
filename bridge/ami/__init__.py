"""The AMI transport: bytes to messages (framing, decoding), the connection to the PBX
(login, Ping watchdog, reconnects, back-pressure) and actions with their replies.

Lowest layer: imports nothing of callbridge. Everything above reads `AmiMessage`.

panoramisk internals replaced, and why:
- `AMIProtocol.data_received` decoded each chunk alone (split UTF-8 mangled): AmiFramer.
- `AMIProtocol.send/handle_message/close/connection_lost` guessed lists from wording and
  re-queued unanswered actions: ActionID correlation in `actions`, pending ones fail.
- `Manager.connect/connection_lost` (fixed 2 s retry, login result unchecked): one
  supervisor task, connect -> login -> FullyBooted -> Ping watchdog -> backoff.
- `Manager.ping` ignored the reply; `Manager.send_action` futures never time out.
- `Manager.dispatch` ran each callback with `ensure_future` (out of order): the ordered
  queue; `register_event(pattern, cb)` callbacks still work, awaited after `on_event`.
"""
