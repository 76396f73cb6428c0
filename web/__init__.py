"""What every page shares: users and roles, login and sessions (argon2, CSRF, role checks),
the audit log, WebSocket task helpers and the pages' static assets. Used by the console
(screenpop), the wallboard (supervision) and the review room (recordings); imports only
the call log's database below it.
"""
