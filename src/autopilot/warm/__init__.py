"""Warm processes: long-lived helpers that import once and fork a child per request.

`protocol` is the socket protocol both kinds speak (documented there); `commands` is the command server that
runs the loop's `autopilot` commands, `trainers` the trainer pool that runs built-in trainers (`fork` is the
child's side), `warmup` starts both at the start of a workflow.
"""
