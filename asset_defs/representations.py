"""Representational similarity across models and datasets (seed 002: Ciernik et al.,
"Objective drives the consistency of representational similarity across datasets", ICML
2025; code lciernik/similarity_consistency, thingsvision's CKA/RSA).

model_features[model × dataset] → representation_similarity[dataset] → similarity_consistency;
model_features → probe_scores[model × dataset] → probe_similarity_link.
"""

import json
from typing import Literal

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MultiPartitionsDefinition,
    asset,
)
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.lineage import data_version
from asset_defs.metadata import bar_plot, heatmap, line_plot, markdown_table
from asset_defs.partitions import dataset, every_partition, model, registered, same_dataset
from asset_defs.profile import params_metadata, profiled
from laionlab.io.digest import fingerprint
from resources import DatasetCatalog, FileStore

GROUP = "representations"
model_dataset = MultiPartitionsDefinition({"dataset": dataset, "model": model})


def _keys(context: AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["model"], keys["dataset"]


def _model_spec(catalog: DatasetCatalog, name: str):
    with library_errors(None, KeyError):
        return catalog.model(name)


# --- model_features --------------------------------------------------------------------------


@profiled("model_features")
class FeaturesConfig(Config):
    max_samples: int = Field(
        10_000, ge=2, description="images per dataset (the paper: at most 10k, the same for every model)"
    )
    seed: int = Field(0, description="seed of the subsample (recorded with the indices)")
    device: str = Field("auto")
    batch_size: int = Field(64, ge=1)


@asset(
    partitions_def=model_dataset,
    group_name=GROUP,
    kinds={"numpy", "pytorch"},
    pool="gpu",
    description="Image features of one catalog model on one dataset, on a seeded subsample of at most 10k images "
    "(indices recorded, identical for every model).",
)
def model_features(
    context: AssetExecutionContext, config: FeaturesConfig, catalog: DatasetCatalog, files: FileStore
) -> MaterializeResult:
    from laionlab.io.reference import list_items
    from laionlab.repsim.models import extract_features, sample_indices

    name, data = _keys(context)
    spec = _model_spec(catalog, name)
    dataset_spec = catalog.get(data)
    items = list_items(dataset_spec)
    indices = sample_indices(len(items.sources), config.max_samples, config.seed)
    context.log.info(f"{name} on {data}: {len(indices)} of {len(items.sources)} images")
    with library_errors():
        X = extract_features(spec, dataset_spec, indices, config.device, config.batch_size)
    if not np.isfinite(X).all():
        raise Failure(f"model {name!r} produced NaN/inf features on dataset {data!r}")
    files.save_npy(X, "model_features", data, f"{name}.npy")
    files.save_npy(indices, "model_features", data, f"{name}.indices.npy")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "samples": len(indices),
            "dim": X.shape[1],
            "objective": spec.objective,
            "layer": spec.layer,
        },
        data_version=data_version(
            context, repr(spec), repr(dataset_spec), fingerprint(dataset_spec.path), indices.tolist()
        ),
    )


def _features(files: FileStore, data: str, names: list[str], normalize: bool = False) -> dict[str, np.ndarray]:
    """Features of every model on a dataset (rows L2-normalised with ``normalize``); refuses
    models without features there and models computed on different samples."""
    from laionlab.repsim import l2_normalise

    missing = [
        n
        for n in names
        if not (
            files.exists("model_features", data, f"{n}.npy")
            and files.exists("model_features", data, f"{n}.indices.npy")
        )
    ]
    if missing:
        raise Failure(
            f"no model_features for models {missing} on dataset {data!r}: materialise model_features for "
            f"{', '.join(f'{n}|{data}' for n in missing)} (or remove the models from the catalog)"
        )
    feats, first = {}, None
    for name in names:
        indices = files.load_npy("model_features", data, f"{name}.indices.npy")
        if first is not None and not np.array_equal(indices, first[1]):
            raise Failure(
                f"models {first[0]!r} and {name!r} saw different samples of {data!r} "
                f"({len(first[1])} vs {len(indices)}): "
                "rematerialise model_features with the same max_samples and seed"
            )
        first = first or (name, indices)
        X = files.load_npy("model_features", data, f"{name}.npy")
        with library_errors():
            feats[name] = (
                l2_normalise(X, copy=False, name=f"model_features of {name!r} on {data!r}") if normalize else X
            )
    return feats


# --- representation_similarity ---------------------------------------------------------------


@profiled("representation_similarity")
class SimilarityConfig(Config):
    """Defaults are the seed's (lciernik/similarity_consistency, ``sim_consistency/tasks/
    model_similarity.py`` on thingsvision 2.6.10, the version its requirements pin).

    * ``normalize``: the seed computes every metric on features stored through
      ``Featurizer(normalize=True)`` (``F.normalize(features, dim=-1)``; ``--normalize`` is on
      by default), so each model's rows are L2-normalised here before CKA and RSA.
    * RBF width: thingsvision 2.6.10's ``get_cka(kernel="rbf", sigma=s)`` uses ``s`` as an
      **absolute** width, ``K = exp(-||x_i - x_j||² / (2 s²))``; only ``sigma=None`` takes the
      median rule ``sqrt(median of the non-zero squared distances)``. The paper's runs pass
      ``--sigma`` 0.2/0.4/0.6/0.8 and its figures use 0.4 ("CKA RBF 0.4", the "local" metric;
      ``notebooks/constants.py``), on normalised features: ``rbf_sigma = 0.4``. Set
      ``rbf_sigma: null`` for the issue's relative rule ``σ = sigma_frac × sqrt(median of the
      non-zero squared distances)`` of each model (``sigma_frac = 1`` is thingsvision's
      ``sigma=None``).
    """

    metrics: list[str] = Field(["linear_cka", "rbf_cka", "rsa"], description="linear_cka, rbf_cka, rsa")
    normalize: bool = Field(
        True,
        description="L2-normalise each model's feature rows before every metric (the seed: Featurizer(normalize=True))",
    )
    unbiased: bool = Field(True, description="unbiased HSIC for CKA (the seed's default)")
    rbf_sigma: float | None = Field(
        0.4,
        gt=0,
        description="absolute RBF width (thingsvision 2.6.10's sigma; the paper's figures: 0.4 on L2-normalised "
        "features); null → sigma_frac × median distance",
    )
    sigma_frac: float = Field(
        1.0, gt=0, description="used when rbf_sigma is null: σ = sigma_frac × sqrt(median non-zero squared distance)"
    )
    rsa_rdm: Literal["correlation", "cosine", "euclidean"] = Field(
        "correlation", description="RDM distance: correlation (1 − Pearson r), cosine or euclidean"
    )
    rsa_corr: Literal["spearman", "pearson"] = Field("spearman", description="correlation of two RDMs")


def _metric_options(config: SimilarityConfig, metric: str) -> dict:
    if metric == "linear_cka":
        return {"unbiased": config.unbiased}
    if metric == "rbf_cka":
        width = {"sigma": config.rbf_sigma} if config.rbf_sigma is not None else {"sigma_frac": config.sigma_frac}
        return {"unbiased": config.unbiased, **width}
    if metric == "rsa":
        return {"rdm": config.rsa_rdm, "corr": config.rsa_corr}
    raise Failure(f"unknown metric {metric!r}; use linear_cka, rbf_cka or rsa")


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=[same_dataset(model_features)],
    kinds={"numpy"},
    description="Model × model similarity on one dataset: CKA (linear and RBF, unbiased by default) and RSA "
    "(Spearman of correlation-distance RDMs) on L2-normalised features, as in the seed's model_similarity task.",
)
def representation_similarity(
    context: AssetExecutionContext, config: SimilarityConfig, files: FileStore
) -> MaterializeResult:
    from laionlab.repsim import similarity_matrix

    data = context.partition_key
    names = registered(context, model)
    if len(names) < 2:
        raise Failure(f"representation similarity needs at least two models, the catalog registers {names}")
    options = {metric: _metric_options(config, metric) for metric in config.metrics}
    if "rbf_cka" in options and config.rbf_sigma is not None and not config.normalize:
        context.log.warning(
            f"rbf_sigma={config.rbf_sigma} is an absolute width meant for L2-normalised features; normalize is off"
        )
    feats = _features(files, data, names, config.normalize)
    out, plots = {}, {}
    for metric, kw in options.items():
        with library_errors(f"{metric} on {data!r}"):
            _, M = similarity_matrix(feats, metric, **kw)
        out[metric] = M
        plots[f"{metric}_heatmap"] = heatmap(
            M, names, f"{metric} on {data}", files.path("representation_similarity", data, f"{metric}.png")
        )
        plots[f"{metric}_table"] = markdown_table(
            pl.DataFrame({"model": names, **{n: np.round(M[:, j], 3) for j, n in enumerate(names)}})
        )
    import io

    buf = io.BytesIO()
    np.savez(buf, names=np.array(names), **out)
    files.write_bytes(buf.getvalue(), "representation_similarity", f"{data}.npz")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "models": ", ".join(names),
            "samples": len(next(iter(feats.values()))),
            "normalized": config.normalize,
            **plots,
        }
    )


def load_similarity(files: FileStore, data: str) -> tuple[list[str], dict[str, np.ndarray]]:
    arrays = files.load_npz("representation_similarity", f"{data}.npz")
    return [str(n) for n in arrays.pop("names")], arrays


# --- similarity_consistency ------------------------------------------------------------------


@asset(
    group_name=GROUP,
    deps=[every_partition(representation_similarity)],
    kinds={"parquet"},
    check_specs=[
        AssetCheckSpec(
            "every_metric_on_every_dataset",
            asset="similarity_consistency",
            description="every metric of representation_similarity is on every dataset (a metric on some only is "
            "left out of the consistency table)",
        )
    ],
    description="For each pair of datasets and each metric, the Pearson and Spearman correlation of their model-"
    "similarity matrices' upper triangles (overall and for model pairs within each objective group).",
)
def similarity_consistency(
    context: AssetExecutionContext, catalog: DatasetCatalog, files: FileStore
) -> MaterializeResult:
    from laionlab.repsim import consistency_matrix, consistency_table

    datasets = [d for d in registered(context, dataset) if _has_similarity(files, d)]
    if len(datasets) < 2:
        raise Failure(f"consistency needs representation_similarity on at least two datasets, found {datasets}")
    loaded = {d: load_similarity(files, d) for d in datasets}
    objectives = {n: _model_spec(catalog, n).objective for n in loaded[datasets[0]][0]}
    with library_errors():
        result = consistency_table(loaded, objectives)
    files.write_parquet(result.table, "similarity_consistency", "consistency.parquet")
    plots = {}
    for metric in result.metrics:
        M = consistency_matrix(result.table, datasets, metric)
        plots[f"{metric}_heatmap"] = heatmap(
            M, datasets, f"consistency (Spearman) of {metric}", files.path("similarity_consistency", f"{metric}.png")
        )
    return MaterializeResult(
        metadata={
            "datasets": ", ".join(datasets),
            "models_by_objective": json.dumps(result.groups),
            "skipped_metrics": json.dumps(result.skipped),
            "consistency": markdown_table(
                result.table.with_columns(pl.col("pearson").round(3), pl.col("spearman").round(3))
            ),
            **plots,
        },
        check_results=[_metrics_check(result.skipped, datasets)],
    )


def _metrics_check(skipped: dict[str, list[str]], datasets: list[str]) -> AssetCheckResult:
    """WARN when a metric was left out because representation_similarity has it on some
    datasets only (rerun representation_similarity with the same metrics everywhere)."""
    return AssetCheckResult(
        check_name="every_metric_on_every_dataset",
        passed=not skipped,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "left_out": json.dumps({metric: f"only on {', '.join(have)}" for metric, have in skipped.items()}),
            "datasets": ", ".join(datasets),
        },
    )


def _has_similarity(files: FileStore, data: str) -> bool:
    return files.exists("representation_similarity", f"{data}.npz")


# --- probes ----------------------------------------------------------------------------------


@profiled("probe_scores")
class ProbeConfig(Config):
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="held-out share of the sampled images (seeded, stratified)"
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of the training rows used to choose C")
    seed: int = Field(0)


def _no_probe(
    context: AssetExecutionContext, config: ProbeConfig, files: FileStore, name: str, data: str
) -> MaterializeResult:
    """probe_scores of a model on an unlabelled dataset: model × dataset holds every pair, so
    "Materialize all" reaches unlabelled sets too; say there is no probe (a record with
    ``applicable: False``, which probe_similarity_link skips) rather than fail the backfill."""
    reason = (
        f"dataset {data!r} has no labels: a linear probe needs a labelled dataset "
        "(image_folder or a parquet with label_column)"
    )
    context.log.warning(f"no probe of {name!r}: {reason}")
    files.write_json(
        {"model": name, "dataset": data, "applicable": False, "reason": reason},
        "probe_scores",
        data,
        f"{name}.json",
    )
    return MaterializeResult(metadata={**params_metadata(config), "applicable": False, "reason": reason})


def _c_sweep_metadata(files: FileStore, record: dict, result: dict) -> dict:
    """The C sweep of a :func:`laionlab.repsim.linear_probe` ``result`` (validation accuracy
    for each of ``DEFAULT_CS``) as a plot and a table, for the probe ``record``."""
    from laionlab.repsim import DEFAULT_CS

    name, data = record["model"], record["dataset"]
    sweep = line_plot(
        list(DEFAULT_CS),
        {"validation accuracy": result["val_accuracies"]},
        "C (inverse L2 strength)",
        f"{name} on {data}: C sweep (test accuracy {record['test_accuracy']:.3f})",
        files.path("probe_scores", data, f"{name}.png"),
    )
    sweep_table = markdown_table(
        pl.DataFrame({"C": list(DEFAULT_CS), "validation_accuracy": np.round(result["val_accuracies"], 4)})
    )
    return {"c_sweep": sweep, "c_sweep_table": sweep_table}


@asset(
    partitions_def=model_dataset,
    group_name=GROUP,
    deps=[model_features],
    kinds={"scikit-learn"},
    description="Linear-probe top-1 accuracy of one model on one labelled dataset (logistic regression, C swept on a "
    "validation split, refit; seeded stratified splits).",
)
def probe_scores(
    context: AssetExecutionContext, config: ProbeConfig, catalog: DatasetCatalog, files: FileStore
) -> MaterializeResult:
    from laionlab.io.reference import list_items
    from laionlab.repsim import linear_probe, stratified_split

    name, data = _keys(context)
    labels = list_items(catalog.get(data)).labels
    if all(label is None for label in labels):
        # model × dataset holds every pair, so "Materialize all" reaches unlabelled sets too: say
        # there is no probe (probe_similarity_link skips the dataset) rather than fail the backfill
        return _no_probe(context, config, files, name, data)
    X = files.load_npy("model_features", data, f"{name}.npy")
    indices = files.load_npy("model_features", data, f"{name}.indices.npy")
    y = np.array([labels[i] for i in indices])
    with library_errors(f"probe of {name!r} on {data!r}"):
        train, test = stratified_split(y, config.test_fraction, config.seed)
        result = linear_probe(X[train], y[train], X[test], y[test], val_fraction=config.val_fraction, seed=config.seed)
    record = {
        "model": name,
        "dataset": data,
        "test_accuracy": float(result["test_accuracy"]),
        "val_accuracy": float(result["val_accuracy"]),
        "best_C": float(result["best_C"]),
        "n_train": len(train),
        "n_test": len(test),
    }
    files.write_json(record, "probe_scores", data, f"{name}.json")
    return MaterializeResult(metadata={**params_metadata(config), **record, **_c_sweep_metadata(files, record, result)})


@asset(
    group_name=GROUP,
    deps=[every_partition(probe_scores), every_partition(representation_similarity)],
    kinds={"parquet"},
    description="Per dataset and metric: the correlation between model-pair similarity and the pair's probe-accuracy "
    "gap (the paper's link between representational similarity and behaviour).",
)
def probe_similarity_link(context: AssetExecutionContext, files: FileStore) -> MaterializeResult:
    from laionlab.repsim import similarity_behaviour_link

    rows = []
    for data in registered(context, dataset):
        if not _has_similarity(files, data):
            continue
        names, matrices = load_similarity(files, data)
        probes = [
            files.read_json("probe_scores", data, f"{n}.json")
            for n in names
            if files.exists("probe_scores", data, f"{n}.json")
        ]
        acc = [p["test_accuracy"] for p in probes if p.get("applicable", True)]
        if len(acc) < len(names):
            context.log.info(
                f"{data}: probe_scores for {len(acc)} of {len(names)} models (an unlabelled dataset has none); skipped"
            )
            continue
        rows += [
            {"dataset": data, "metric": metric, **similarity_behaviour_link(M, acc)} for metric, M in matrices.items()
        ]
    if not rows:
        raise Failure("no dataset has both probe_scores for every model and representation_similarity")
    table = pl.DataFrame(rows)
    files.write_parquet(table, "probe_similarity_link", "link.parquet")
    return MaterializeResult(
        metadata={
            "link": markdown_table(table.with_columns(pl.col("pearson").round(3), pl.col("spearman").round(3))),
            "link_plot": bar_plot(
                [f"{r['dataset']}\n{r['metric']}" for r in rows],
                [r["spearman"] for r in rows],
                "Spearman r: model-pair similarity vs probe-accuracy gap",
                "Spearman r",
                files.path("probe_similarity_link", "link.png"),
            ),
        }
    )


assets = [model_features, representation_similarity, similarity_consistency, probe_scores, probe_similarity_link]
