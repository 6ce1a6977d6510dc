"""Built-in training tasks. Each is a module run as `python -m autopilot.tasks.<name> CONFIG RUN_DIR`."""
