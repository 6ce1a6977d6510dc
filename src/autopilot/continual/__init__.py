"""Continual training (mode continual): every queued dataset trains the champion further.

    start      where a run starts: the champion's exported weights, and the evaluation sets it is measured on
    training   the train step: one trainer from the champion on the claimed dataset (no seed protocol)
    judging    the judge step: champion against challenger over every set, then the dataset's outcome and the
               curriculum's evaluation (autopilot.judge.sets holds the statistics)
    datasets   what happens to the run's dataset: queue/done/ with the run id, or queue/quarantine/ with the evidence
    lineage    the champions in order, and the data each was trained on
"""
