# Ingest: inbox/ -> queue/<priority>/ (or queue/failed/ with a reason). The first new run of an invocation waits
# for it, so every invocation starts by taking what was dropped into inbox/; `snakemake ingest` runs it alone.
from pathlib import Path

# Snakemake keeps a temp output that was asked for as a target: the marker of an earlier `snakemake ingest`
# must not make this invocation skip its ingest (only the main process; jobs re-read this file on a cluster).
if workflow.is_main_process:
    Path("queue/.ingest.done").unlink(missing_ok=True)


rule ingest:
    output:
        done=temp("queue/.ingest.done"),
    log:
        "queue/ingest.log",
    conda:
        "../envs/controller.yaml"
    params:
        study=config["study"],
    shell:
        "autopilot ingest --study {params.study} > {log} 2>&1 && touch {output.done}"
