"""The AMI transport: bytes to messages (framing, decoding), the connection to the PBX
(login, Ping watchdog, reconnects, back-pressure) and actions with their replies.

Lowest layer: imports nothing of callbridge. Everything above reads `AmiMessage`.
"""
