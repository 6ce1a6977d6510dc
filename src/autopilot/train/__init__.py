"""Train: run a guarded config.json under supervision, seed after seed, and honour the trainer contract.

`runner` trains a run's seeds, `supervisor` one trainer process (process group, time limit, retries), `contract`
is the trainer's own side (metrics, heartbeat, control files, summary), `tasks/` the built-in trainers with
`checkpoints`, `manifest`, `gpus` and the causal-LM data layer `lm_data`.
"""
