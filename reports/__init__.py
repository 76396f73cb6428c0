"""Reports and staffing advice (issue 12): the manager's figures from the call log.

A feature, beside screenpop / supervision / recordings (never importing them): the pure
definitions (shared with the wallboard through `bridge.calls.definitions`), Erlang and
staffing maths, the queue member log, SQL aggregations, the `Report` service, its HTTP API,
and the `callbridge report` / `callbridge staffing` commands. May import web, crm_adapters,
bridge.call_log, bridge.calls and bridge.ami. The contract: docs/reports_api.md.
"""
