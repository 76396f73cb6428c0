"""callbridge: the Asterisk caller-identification bridge.

The top of this package wires the service (`service`, `settings`, `cli`, `demo`, `schema`,
`migrations`); its sub-packages are the layers below: `ami` (transport), `calls` (the pure
call model), `call_log` (persistence), `simulator` (a PBX for the demo and tests).
"""
