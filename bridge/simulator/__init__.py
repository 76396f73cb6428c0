"""The AMI simulator: a real TCP server that replays recorded Asterisk captures, answers
actions as Asterisk does, and injects faults (drops, outages, PBX restarts) for the demo
and the tests. Imports only bridge.ami. Run it: `python -m bridge.simulator FILE.ami ...`.
"""
