"""Built-in training tasks. Each is a module run as `python -m autopilot.train.tasks.<name> CONFIG RUN_DIR`."""
