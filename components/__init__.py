"""The platform's code that is not serving, one subpackage per concern.

- `core/`: the contracts every part shares (event line, event log, store, layout, rollout state,
  model artifact, params, snapshots, statistics). Imports no sibling.
- `ingest/`: where an event enters: the event log into Parquet snapshots, retention, MovieLens.
- `training/`: where a model is made: dataset, preprocess, recommenders, train, evaluate, publish.
- `online/`: where a decision is taken: the join of answers with later watches, canary analysis,
  drift, the online report, tracing an answer back to its model card.
- `steps.py` (the Kubeflow components) and `cli.py` sit on top and may import all of them.

Imports point one way: core <- ingest, training <- online <- steps, cli. `pipelines` and
`predictor` import `components`; `components` imports neither; only the demo, the benchmarks and
the tests import `simulator`. `tests/unit/test_architecture.py` enforces it.
"""
