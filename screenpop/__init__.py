"""The operator console: the screen-pop card rules, the WebSocket hub that pushes
cards to operators' browsers, notes and new contacts, and the console routes. May
import bridge.calls, crm_adapters and web.
"""
