"""Representational similarity across models and datasets (seed 002: Ciernik et al.,
"Objective drives the consistency of representational similarity across datasets", ICML
2025; code lciernik/similarity_consistency, thingsvision's CKA/RSA).

model_features[model × dataset] → representation_similarity[dataset] → similarity_consistency;
model_features → probe_scores[model × dataset] → probe_similarity_link.
"""

import json

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MultiPartitionsDefinition, asset
from pydantic import Field

from asset_defs.metadata import bar_plot, line_plot, markdown_table, png_markdown
from asset_defs.partitions import dataset, model, registered
from resources import DatasetCatalog, FileStore

GROUP = "representations"
model_dataset = MultiPartitionsDefinition({"dataset": dataset, "model": model})


def _keys(context: AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["model"], keys["dataset"]


def _model_spec(catalog: DatasetCatalog, name: str):
    try:
        return catalog.model(name)
    except (KeyError, ValueError) as err:
        raise Failure(str(err)) from None


# --- model_features --------------------------------------------------------------------------


class FeaturesConfig(Config):
    max_samples: int = Field(10_000, ge=2, description="images per dataset (the paper: at most 10k, the same for every model)")
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
def model_features(context: AssetExecutionContext, config: FeaturesConfig, catalog: DatasetCatalog, files: FileStore) -> MaterializeResult:
    from laionlab.io.reference import list_items
    from laionlab.repsim.models import extract_features, sample_indices

    name, data = _keys(context)
    spec = _model_spec(catalog, name)
    dataset_spec = catalog.get(data)
    items = list_items(dataset_spec)
    indices = sample_indices(len(items.sources), config.max_samples, config.seed)
    context.log.info(f"{name} on {data}: {len(indices)} of {len(items.sources)} images")
    try:
        X = extract_features(spec, dataset_spec, indices, config.device, config.batch_size)
    except ValueError as err:
        raise Failure(str(err)) from None
    if not np.isfinite(X).all():
        raise Failure(f"model {name!r} produced NaN/inf features on dataset {data!r}")
    files.save_npy(X, "model_features", data, f"{name}.npy")
    files.save_npy(indices, "model_features", data, f"{name}.indices.npy")
    return MaterializeResult(metadata={"samples": len(indices), "dim": X.shape[1], "objective": spec.objective, "layer": spec.layer})


def _features(files: FileStore, data: str, names: list[str]) -> dict[str, np.ndarray]:
    """Features of every model on a dataset; refuses models computed on different samples."""
    feats, first = {}, None
    for name in names:
        indices = files.load_npy("model_features", data, f"{name}.indices.npy")
        if first is not None and not np.array_equal(indices, first[1]):
            raise Failure(
                f"models {first[0]!r} and {name!r} saw different samples of {data!r} ({len(first[1])} vs {len(indices)}): "
                "rematerialise model_features with the same max_samples and seed"
            )
        first = first or (name, indices)
        feats[name] = files.load_npy("model_features", data, f"{name}.npy")
    return feats


# --- representation_similarity ---------------------------------------------------------------


class SimilarityConfig(Config):
    metrics: list[str] = Field(["linear_cka", "rbf_cka", "rsa"], description="linear_cka, rbf_cka, rsa")
    unbiased: bool = Field(True, description="unbiased HSIC for CKA (the seed's default)")
    rbf_sigma: float | None = Field(0.4, description="absolute RBF width on L2-normalised features (the seed: 0.4); null → sigma_frac × median distance")
    sigma_frac: float = Field(1.0, gt=0, description="used when rbf_sigma is null")
    rsa_rdm: str = Field("correlation", description="correlation (1 − Pearson r), cosine or euclidean")
    rsa_corr: str = Field("spearman", description="spearman or pearson")


def _heatmap(matrix: np.ndarray, labels: list[str], title: str, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
    im = ax.imshow(matrix, vmin=min(0.0, float(np.nanmin(matrix))), vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return png_markdown(fig, path)


def _normalised(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


@asset(
    partitions_def=dataset,
    group_name=GROUP,
    deps=[model_features],
    kinds={"numpy"},
    description="Model × model similarity on one dataset: CKA (linear and RBF, unbiased by default) and RSA "
    "(Spearman of correlation-distance RDMs), as in the seed's model_similarity task.",
)
def representation_similarity(context: AssetExecutionContext, config: SimilarityConfig, files: FileStore) -> MaterializeResult:
    from laionlab.repsim import similarity_matrix

    data = context.partition_key
    names = registered(context, model)
    if len(names) < 2:
        raise Failure(f"representation similarity needs at least two models, the catalog registers {names}")
    feats = _features(files, data, names)
    out, plots = {}, {}
    for metric in config.metrics:
        if metric == "linear_cka":
            kw = {"unbiased": config.unbiased}
        elif metric == "rbf_cka":
            kw = {"unbiased": config.unbiased, **({"sigma": config.rbf_sigma} if config.rbf_sigma is not None else {"sigma_frac": config.sigma_frac})}
        elif metric == "rsa":
            kw = {"rdm": config.rsa_rdm, "corr": config.rsa_corr}
        else:
            raise Failure(f"unknown metric {metric!r}; use linear_cka, rbf_cka or rsa")
        inputs = {n: _normalised(x) for n, x in feats.items()} if metric == "rbf_cka" else feats  # the seed's features are L2-normalised
        try:
            _, M = similarity_matrix(inputs, metric, **kw)
        except ValueError as err:
            raise Failure(f"{metric} on {data!r}: {err}") from None
        out[metric] = M
        plots[f"{metric}_heatmap"] = _heatmap(M, names, f"{metric} on {data}", files.path("representation_similarity", data, f"{metric}.png"))
        plots[f"{metric}_table"] = markdown_table(pl.DataFrame({"model": names, **{n: np.round(M[:, j], 3) for j, n in enumerate(names)}}))
    import io

    buf = io.BytesIO()
    np.savez(buf, names=np.array(names), **out)
    files.write_bytes(buf.getvalue(), "representation_similarity", f"{data}.npz")
    return MaterializeResult(metadata={"models": ", ".join(names), "samples": len(next(iter(feats.values()))), **plots})


def load_similarity(files: FileStore, data: str) -> tuple[list[str], dict[str, np.ndarray]]:
    from laionlab.io.files import load_npz

    arrays = load_npz(files.path("representation_similarity", f"{data}.npz"))
    return [str(n) for n in arrays.pop("names")], arrays


# --- similarity_consistency ------------------------------------------------------------------


@asset(
    group_name=GROUP,
    deps=[representation_similarity],
    kinds={"parquet"},
    description="For each pair of datasets and each metric, the Pearson and Spearman correlation of their model-"
    "similarity matrices' upper triangles (overall and for model pairs within each objective group).",
)
def similarity_consistency(context: AssetExecutionContext, catalog: DatasetCatalog, files: FileStore) -> MaterializeResult:
    from laionlab.repsim import consistency

    datasets = [d for d in registered(context, dataset) if _has_similarity(files, d)]
    if len(datasets) < 2:
        raise Failure(f"consistency needs representation_similarity on at least two datasets, found {datasets}")
    loaded = {d: load_similarity(files, d) for d in datasets}
    names = loaded[datasets[0]][0]
    for d, (n, _) in loaded.items():
        if n != names:
            raise Failure(f"representation_similarity[{d}] covers models {n}, [{datasets[0]}] {names}: rematerialise them together")
    objective = {n: catalog.model(n).objective for n in names}
    rows = []
    for metric in loaded[datasets[0]][1]:
        for i, a in enumerate(datasets):
            for b in datasets[i + 1 :]:
                c = consistency(loaded[a][1][metric], loaded[b][1][metric])
                rows.append({"metric": metric, "dataset_a": a, "dataset_b": b, "group": "all", **c})
                for group in sorted(set(objective.values())):
                    idx = [k for k, n in enumerate(names) if objective[n] == group]
                    if len(idx) >= 3:  # at least 3 pairs to correlate
                        sub = np.ix_(idx, idx)
                        rows.append({"metric": metric, "dataset_a": a, "dataset_b": b, "group": group, **consistency(loaded[a][1][metric][sub], loaded[b][1][metric][sub])})
    table = pl.DataFrame(rows)
    files.write_parquet(table, "similarity_consistency", "consistency.parquet")
    plots = {}
    for metric in table["metric"].unique(maintain_order=True):
        M = np.eye(len(datasets))
        for r in table.filter((pl.col("metric") == metric) & (pl.col("group") == "all")).iter_rows(named=True):
            i, j = datasets.index(r["dataset_a"]), datasets.index(r["dataset_b"])
            M[i, j] = M[j, i] = r["spearman"]
        plots[f"{metric}_heatmap"] = _heatmap(M, datasets, f"consistency (Spearman) of {metric}", files.path("similarity_consistency", f"{metric}.png"))
    return MaterializeResult(
        metadata={
            "datasets": ", ".join(datasets),
            "models_by_objective": json.dumps({g: [n for n in names if objective[n] == g] for g in sorted(set(objective.values()))}),
            "consistency": markdown_table(table.with_columns(pl.col("pearson").round(3), pl.col("spearman").round(3))),
            **plots,
        }
    )


def _has_similarity(files: FileStore, data: str) -> bool:
    return files.exists("representation_similarity", f"{data}.npz")


# --- probes ----------------------------------------------------------------------------------


class ProbeConfig(Config):
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share of the sampled images (seeded, stratified)")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of the training rows used to choose C")
    seed: int = Field(0)


@asset(
    partitions_def=model_dataset,
    group_name=GROUP,
    deps=[model_features],
    kinds={"scikit-learn"},
    description="Linear-probe top-1 accuracy of one model on one labelled dataset (logistic regression, C swept on a "
    "validation split, refit; seeded stratified splits).",
)
def probe_scores(context: AssetExecutionContext, config: ProbeConfig, catalog: DatasetCatalog, files: FileStore) -> MaterializeResult:
    from laionlab.io.reference import list_items
    from laionlab.repsim import DEFAULT_CS, linear_probe, stratified_split

    name, data = _keys(context)
    labels = list_items(catalog.get(data)).labels
    if all(label is None for label in labels):
        raise Failure(f"dataset {data!r} has no labels: a linear probe needs a labelled dataset (image_folder or a parquet with label_column)")
    X = files.load_npy("model_features", data, f"{name}.npy")
    indices = files.load_npy("model_features", data, f"{name}.indices.npy")
    y = np.array([labels[i] for i in indices])
    try:
        train, test = stratified_split(y, config.test_fraction, config.seed)
        result = linear_probe(X[train], y[train], X[test], y[test], val_fraction=config.val_fraction, seed=config.seed)
    except ValueError as err:
        raise Failure(f"probe of {name!r} on {data!r}: {err}") from None
    record = {"model": name, "dataset": data, "test_accuracy": float(result["test_accuracy"]), "val_accuracy": float(result["val_accuracy"]), "best_C": float(result["best_C"]), "n_train": len(train), "n_test": len(test)}
    files.write_json(record, "probe_scores", data, f"{name}.json")
    sweep = line_plot(
        list(DEFAULT_CS), {"validation accuracy": result["val_accuracies"]}, "C (inverse L2 strength)",
        f"{name} on {data}: C sweep (test accuracy {record['test_accuracy']:.3f})", files.path("probe_scores", data, f"{name}.png"),
    )
    sweep_table = markdown_table(pl.DataFrame({"C": list(DEFAULT_CS), "validation_accuracy": np.round(result["val_accuracies"], 4)}))
    return MaterializeResult(metadata={**record, "c_sweep": sweep, "c_sweep_table": sweep_table})


@asset(
    group_name=GROUP,
    deps=[probe_scores, representation_similarity],
    kinds={"parquet"},
    description="Per dataset and metric: the correlation between model-pair similarity and the pair's probe-accuracy "
    "gap (the paper's link between representational similarity and behaviour).",
)
def probe_similarity_link(context: AssetExecutionContext, files: FileStore) -> MaterializeResult:
    from scipy.stats import pearsonr, spearmanr

    rows = []
    for data in registered(context, dataset):
        if not _has_similarity(files, data):
            continue
        names, matrices = load_similarity(files, data)
        acc = {}
        for n in names:
            if files.exists("probe_scores", data, f"{n}.json"):
                acc[n] = files.read_json("probe_scores", data, f"{n}.json")["test_accuracy"]
        if len(acc) < len(names):
            continue  # an unlabelled dataset has no probes
        iu = np.triu_indices(len(names), k=1)
        gap = np.array([abs(acc[names[i]] - acc[names[j]]) for i, j in zip(*iu)])
        for metric, M in matrices.items():
            sims = M[iu]
            ok = len(gap) >= 3 and np.ptp(gap) > 0 and np.ptp(sims) > 0
            rows.append({
                "dataset": data, "metric": metric, "model_pairs": len(gap),
                "pearson": float(pearsonr(sims, gap)[0]) if ok else float("nan"),
                "spearman": float(spearmanr(sims, gap)[0]) if ok else float("nan"),
            })  # fmt: skip
    if not rows:
        raise Failure("no dataset has both probe_scores for every model and representation_similarity")
    table = pl.DataFrame(rows)
    files.write_parquet(table, "probe_similarity_link", "link.parquet")
    return MaterializeResult(
        metadata={
            "link": markdown_table(table.with_columns(pl.col("pearson").round(3), pl.col("spearman").round(3))),
            "link_plot": bar_plot(
                [f"{r['dataset']}\n{r['metric']}" for r in rows], [r["spearman"] for r in rows],
                "Spearman r: model-pair similarity vs probe-accuracy gap", "Spearman r", files.path("probe_similarity_link", "link.png"),
            ),
        }
    )


assets = [model_features, representation_similarity, similarity_consistency, probe_scores, probe_similarity_link]
