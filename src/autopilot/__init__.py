"""autopilot: an auditable autopilot for machine-learning training.

Every step of the train-evaluate-decide loop is a plain file under `runs/<study>/`.
"""

__version__ = "0.1.0"
