# One iteration: propose -> guard -> train -> judge -> journal -> champion. Each rule calls one `autopilot` command.
# Only training goes to a cluster node (one GPU each); the short steps run where Snakemake runs. Software: the
# short steps take the controller image (Snakefile) or envs/controller.yaml (no torch); training the trainer's, and
# so does the champion step (a promotion exports weights and scores them on the held-out split: it needs torch).


localrules:
    propose_run,
    guard_proposal,
    judge_run,
    record_run,
    update_champion,


rule propose_run:
    input:
        unpack(get_propose_inputs),
    output:
        proposal=f"{RUNS}/{{run}}/proposal.json",
    log:
        f"{RUNS}/{{run}}/logs/propose_run.log",
    conda:
        "../envs/controller.yaml"
    params:
        study=STUDY.name,
        generation=get_generation,
        place=get_place,
    shell:
        "autopilot propose --study {params.study} --run {wildcards.run} --generation {params.generation}"
        " --place {params.place} > {log} 2>&1"


rule guard_proposal:
    input:
        proposal=rules.propose_run.output.proposal,
    output:
        config=f"{RUNS}/{{run}}/config.json",
        guard=f"{RUNS}/{{run}}/guard.json",
    log:
        f"{RUNS}/{{run}}/logs/guard_proposal.log",
    conda:
        "../envs/controller.yaml"
    params:
        study=STUDY.name,
    shell:
        "autopilot guard --study {params.study} --run {wildcards.run} > {log} 2>&1"


rule train_model:
    input:
        config=rules.guard_proposal.output.config,
    output:
        summary=f"{RUNS}/{{run}}/trainer_summary.json",
    log:
        f"{RUNS}/{{run}}/logs/train_model.log",
    conda:
        "../envs/trainer.yaml"
    container:
        get_trainer_image()
    resources:
        gpu=1,
    params:
        study=STUDY.name,
    shell:
        "autopilot train --study {params.study} --run {wildcards.run} > {log} 2>&1"


rule judge_run:
    input:
        summary=rules.train_model.output.summary,
    output:
        verdict=f"{RUNS}/{{run}}/verdict.json",
    log:
        f"{RUNS}/{{run}}/logs/judge_run.log",
    conda:
        "../envs/controller.yaml"
    params:
        study=STUDY.name,
    shell:
        "autopilot judge --study {params.study} --run {wildcards.run} > {log} 2>&1"


rule record_run:
    input:
        verdict=rules.judge_run.output.verdict,
    output:
        entry=f"{RUNS}/{{run}}/journal_entry.json",
    log:
        f"{RUNS}/{{run}}/logs/record_run.log",
    conda:
        "../envs/controller.yaml"
    params:
        study=STUDY.name,
    shell:
        "autopilot journal --study {params.study} --run {wildcards.run} > {log} 2>&1"


rule update_champion:
    input:
        entry=rules.record_run.output.entry,
    output:
        registry=f"{RUNS}/{{run}}/registry.json",
    log:
        f"{RUNS}/{{run}}/logs/update_champion.log",
    conda:
        "../envs/trainer.yaml"
    container:
        get_trainer_image()
    params:
        study=STUDY.name,
    shell:
        "autopilot champion --study {params.study} --run {wildcards.run} > {log} 2>&1"
