"""movierec-training: event log -> ingest -> preprocess -> train each model -> evaluate -> publish.

    ingest (caching off: its input is a live stream)
      -> preprocess (dataset split by time)
        -> train svd    -> evaluate -> publish --+
        -> train svdpp  -> evaluate -> publish --+
        -> train als    -> evaluate -> publish --+-> compare (side-by-side report, the winner)
                                                      -> release (refit the winner, publish it, deploy)

The models are `train.algorithms` of params.yaml (one to four), fixed when the pipeline is
compiled (`pipeline_for`); `training_pipeline` is the one for the default list. Each train step
fits with the configured hyper-parameters (`train.tune.mode: fixed`, fast) or searches them first
on an earlier time fold of the train period (`search`, for scheduled runs; its trials are on the
model card).

On a cluster the steps that read or write the artifact store get the S3 (MinIO) endpoint and
credentials as environment variables from the Kubernetes Secret named by `s3_secret` (keys
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, optionally, AWS_ENDPOINT_URL), through
kfp-kubernetes; kfp.local ignores that and uses the caller's environment.

Every model is published as a version, with its offline metrics and its gate decision in its
card; none is deployed there. `compare` picks the winner (the best gated candidate on the primary
metric) and `release` alone refits it on the whole snapshot (`evaluate.refit`), publishes the refit
(its card names the evaluated version, `gate.refit_of`) and deploys the refit (the winner itself
without refit): with `deploy="canary"` it becomes the canary, or stable when nothing is deployed
yet; with `deploy="stable"` it replaces the stable version. One model is deployed per run (before,
each passing model was refit and deployed in list order, the first stable, the last the canary).
Without a winner nothing is released, unless `force_deploy`: then the best model on the primary
metric is deployed past its gate, as the rollout history records. The steps are the thin
components of `components.steps`; this file only wires them.

    python -m pipelines.training_pipeline build/pipeline.yaml     # compile
"""

import json
import sys

from kfp import compiler, dsl

from components.core.errors import UserError
from components.core.params import DEFAULTS, check_algorithms, complete
from components.steps import COMPARE_SLOTS, compare, evaluate, ingest, preprocess, publish, release, train

PIPELINE_NAME = "movierec-training"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}


def with_store_credentials(task, secret):
    """Give a step the store's S3 endpoint and credentials from a Kubernetes Secret (cluster only)."""
    from kfp import kubernetes

    kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=S3_KEYS)
    kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env={"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"},
                                 optional=True)
    return task


def pipeline_for(algorithms: tuple[str, ...] | list[str]):
    """The pipeline training `algorithms` (one to four, distinct; train.algorithms of params.yaml);
    the winner among them is released."""
    algorithms = tuple(check_algorithms(list(algorithms), where="train.algorithms"))
    if not 1 <= len(algorithms) <= len(COMPARE_SLOTS) or len(set(algorithms)) != len(algorithms):
        raise UserError(f"train.algorithms: give 1 to {len(COMPARE_SLOTS)} distinct algorithms, got "
                        f"{', '.join(algorithms) or 'none'}")

    @dsl.pipeline(name=PIPELINE_NAME,
                  description=f"Ingest the event log, train {', '.join(algorithms)}, evaluate offline against a "
                              "popularity baseline, publish gated model versions to the artifact store, release the winner.")
    def training_pipeline(source: str = "file:events.log", store: str = ".movierec/store", params: str = "{}",
                          group: str = "movierec-ingest", deploy: str = "none", canary_percent: float = 10.0,
                          force_deploy: bool = False, s3_secret: str = "movierec-s3-pipeline") -> str:
        ingested = with_store_credentials(ingest(source=source, store=store, group=group), s3_secret)
        ingested.set_caching_options(False)
        ingested.set_display_name("ingest")
        prepared = with_store_credentials(preprocess(store=store, params=params).after(ingested), s3_secret)
        prepared.set_caching_options(False)               # reads the store, which ingest just changed
        prepared.set_display_name("preprocess")
        published = []
        evaluations = []
        for algorithm in algorithms:
            trained = train(dataset=prepared.outputs["dataset"], algorithm=algorithm, params=params)
            trained.set_display_name(f"train-{algorithm}")
            scored = with_store_credentials(evaluate(dataset=prepared.outputs["dataset"],
                                                     model=trained.outputs["model"], params=params, store=store),
                                            s3_secret)
            scored.set_caching_options(False)             # compares with whatever is stable now
            scored.set_display_name(f"evaluate-{algorithm}")
            recorded = publish(model=trained.outputs["model"], evaluation=scored.outputs["evaluation"],
                               dataset=prepared.outputs["dataset"], store=store, params=params,
                               run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER)
            with_store_credentials(recorded, s3_secret)
            recorded.set_display_name(f"publish-{algorithm}")
            recorded.set_caching_options(False)           # it writes the registry
            published.append(recorded)
            evaluations.append(scored)
        slots = {}
        for slot, scored, recorded in zip(COMPARE_SLOTS, evaluations, published, strict=False):
            slots[f"evaluation_{slot}"] = scored.outputs["evaluation"]
            slots[f"candidate_{slot}"] = recorded.outputs["candidate"]
        compared = compare(**slots)
        compared.set_display_name("compare")
        released = with_store_credentials(release(store=store, winner=compared.outputs["winner"],
                                                  best=compared.outputs["best"], params=params, deploy=deploy,
                                                  canary_percent=canary_percent, force=force_deploy,
                                                  run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER), s3_secret)
        released.set_display_name("release")
        released.set_caching_options(False)               # refits on the store's snapshot, writes the rollout state
        return compared.outputs["winner"]

    return training_pipeline


ALGORITHMS = tuple(DEFAULTS["train"]["algorithms"])
training_pipeline = pipeline_for(ALGORITHMS)


def compile_pipeline(output: str, params: dict | None = None) -> str:
    """Write the pipeline spec (YAML) to `output`; `params` (params.yaml as a dict) become the
    default of the `params` pipeline parameter (completed by the built-in defaults), so the compiled
    file runs with them. Return the path."""
    defaults = {"params": json.dumps(complete(params), sort_keys=True)} if params is not None else None
    pipeline = pipeline_for(complete(params)["train"]["algorithms"]) if params is not None else training_pipeline
    compiler.Compiler().compile(pipeline, package_path=output, pipeline_parameters=defaults)
    return output


if __name__ == "__main__":
    print(compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "pipeline.yaml"))
