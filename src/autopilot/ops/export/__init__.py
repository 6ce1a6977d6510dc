"""Exports of a study to the tools people already look at: MLflow's tracking store and an Optuna storage.

Each export reads the ledger and the run folders only (never writes under runs/) and adds the finished runs the
target does not hold yet, so running it again (from cron, after every invocation) adds only what is new.
"""
