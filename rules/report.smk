# The study's report, one self-contained HTML file: snakemake -c1 report_study (the same as `autopilot report`).
# Rebuilt when history.jsonl is newer than it; not part of `rule all`, so a plain invocation only runs the loop.


rule report_study:
    input:
        history=f"{RUNS}/history.jsonl",
    output:
        report=f"{RUNS}/report.html",
    log:
        f"{RUNS}/logs/report_study.log",
    conda:
        "../envs/controller.yaml"
    params:
        study=STUDY.name,
    shell:
        "autopilot report --study {params.study} --out {output.report} > {log} 2>&1"
