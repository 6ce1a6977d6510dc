"""The champion of a study: the registry in models/<study>/, its retention, and the free-space guard.

    champion   promote (the judge's, in the step after the journal; a person's), roll back, `current`
    export     a promoted run's final weights into its champion folder (save_pretrained, or state dict + config)
    testscore  the champion's one evaluation on the held-out test split, in a process of its own
    retention  which checkpoint folders and old champions are removed once runs are judged
    disk       may a run start: enough free space on the runs' file system
"""
