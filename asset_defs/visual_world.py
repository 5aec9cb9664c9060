"""Visual world (seed 000, Roth & Hebart, "How to sample the world for understanding the
visual system", CCN 2025): the photo classifier, LAION-natural and its k-means clusters,
coverage, stimulus sets, OOD and neural generalisation, concept distributions. The reference
datasets it compares with are ``reference_embeddings`` (asset_defs/ingest.py).
"""

from typing import Literal

import numpy as np
import polars as pl
from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.ingest import downloaded_shards, laion_embeddings, reference_embeddings
from asset_defs.lineage import require_same_params
from asset_defs.metadata import (
    bar_plot,
    gallery_metadata,
    histogram,
    largest_clusters,
    line_plot,
    markdown_table,
    quantile_table,
)
from asset_defs.partitions import dataset, every_partition, laion_part, registered
from asset_defs.profile import params_metadata, profiled
from asset_defs.readers import laion_vectors, laion_vectors_for, reference_vectors, sample_laion_vectors
from laionlab.filter.photo import (
    NON_PHOTO_PROMPTS,
    PHOTO_PROMPTS,
    LinearClassifier,
    import_classifier,
    keep_natural,
    photo_labels_by_uid,
    read_photo_labels,
    train_on_labelled_rows,
    zero_shot_classifier,
)
from laionlab.progress import Progress
from resources import ClipEncoder, DatasetCatalog, FileStore, LanceStore

GROUP = "visual_world"


@profiled("photo_classifier")
class PhotoClassifierConfig(Config):
    labels_path: str | None = Field(
        None, description="parquet with URL or uid and is_photo to train the seed's LogisticRegression on"
    )
    import_path: str | None = Field(None, description="an existing linear classifier (.npz/.json or .skops)")
    import_input: Literal["raw", "unit"] = Field("raw", description="feature space of the imported classifier")
    C: float = Field(1.0, gt=0, description="inverse L2 strength (seed: 1.0)")
    cv_folds: int = Field(5, ge=2)


@asset(
    group_name=GROUP,
    deps=[every_partition(laion_embeddings)],
    kinds={"scikit-learn", "numpy"},
    description="The LAION-natural photo classifier as plain arrays (coef, intercept; never a pickle): "
    "trained like the seed's LogisticRegression when labels are configured, else zero-shot from text prompts.",
)
def photo_classifier(
    context: AssetExecutionContext,
    config: PhotoClassifierConfig,
    clip: ClipEncoder,
    files: FileStore,
    lance: LanceStore,
) -> MaterializeResult:
    if config.import_path:
        clf = import_classifier(config.import_path, input=config.import_input)
    elif config.labels_path:
        with library_errors("photo_classifier"):
            labels = read_photo_labels(config.labels_path)  # a local path or an fsspec URI
        # labelled by URL: the labelled URLs' uids, part by part (two metadata columns, read only then)
        urls_by_part = (
            files.read_parquet("laion_metadata", f"{p}.parquet", columns=["uid", "URL"])
            for p in registered(context, laion_part)
        )
        wanted = photo_labels_by_uid(labels, urls_by_part)
        uids, X = laion_vectors_for(lance, wanted["uid"].unique().to_list(), log=context.log, raw=True)
        with library_errors("photo_classifier"):  # uid order: seeded CV folds
            clf, trained_on = train_on_labelled_rows(
                uids, X, wanted, C=config.C, cv=config.cv_folds, name=config.labels_path
            )
    else:
        from laionlab.embed.encode import encode_texts

        loaded = clip.load()
        clf = zero_shot_classifier(encode_texts(loaded, PHOTO_PROMPTS), encode_texts(loaded, NON_PHOTO_PROMPTS))
        clf.info["model_id"] = loaded.model_id
    npz, meta = clf.save(files.path("photo_classifier", "classifier"))
    # trained on labelled LAION rows: the parts it saw; zero-shot or imported: no part at all
    trained = config.labels_path and not config.import_path
    seen = {"parts_seen": ", ".join(_parts(trained_on))} if trained else {"reads_parts": False}
    return MaterializeResult(
        metadata={
            "lance_versions_read": MetadataValue.json(lance.versions_read()),
            **params_metadata(config),
            **seen,
            "source": clf.source,
            "input": clf.input,
            "dim": clf.dim,
            "path": str(npz),
            **{k: v for k, v in clf.info.items() if isinstance(v, (int, float, str))},
        }
    )


def _parts(uids: list[str]) -> list[str]:
    return sorted({u.split(":")[0] for u in uids})


def load_photo_classifier(files: FileStore) -> LinearClassifier:
    return LinearClassifier.load(files.path("photo_classifier", "classifier"))


@profiled("laion_natural")
class LaionNaturalConfig(Config):
    threshold: float = Field(
        0.75, ge=0, le=1, description="keep P(photo) > threshold (seed analyses: 0.75; code default 0.65)"
    )
    remove_nsfw: bool = Field(True, description="drop rows whose NSFW column says NSFW")


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[every_partition(photo_classifier), laion_embeddings],
    kinds={"parquet"},
    description="LAION-natural: the uids of a part whose photo probability is above the threshold (0.75), "
    "NSFW removed.",
)
def laion_natural(
    context: AssetExecutionContext, config: LaionNaturalConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    part = context.partition_key
    clf = load_photo_classifier(files)
    uids, X = laion_vectors(lance, part=part, raw=clf.input == "raw")
    if not uids:
        raise Failure(f"laion_embeddings has no rows for part {part!r}; materialise it first")
    proba = clf.predict_proba(X)
    frame = pl.DataFrame({"uid": uids, "photo_proba": proba.astype(np.float32)})
    nsfw = 0
    if config.remove_nsfw:
        meta = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "NSFW")
        frame = frame.join(meta, on="uid", how="left")
        flagged = frame["NSFW"].fill_null("").str.to_uppercase() == "NSFW"
        nsfw = int(flagged.sum())
        frame = frame.filter(~flagged).drop("NSFW")
    kept = frame.filter(pl.Series(keep_natural(frame["photo_proba"].to_numpy(), config.threshold)))
    files.write_parquet(kept.sort("uid"), "laion_natural", f"{part}.parquet")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "rows_in": len(uids),
            "kept": kept.height,
            "fraction_kept": round(kept.height / len(uids), 4),
            "nsfw_removed": nsfw,
            "threshold": config.threshold,
            "classifier": clf.source,
            "photo_proba_histogram": histogram(
                frame["photo_proba"].to_numpy(),
                "P(photo)",
                f"{part}: photo probability (NSFW removed)",
                files.path("laion_natural", f"{part}.png"),
                mark=(config.threshold, f"threshold {config.threshold}"),
                ylabel="rows",
            ),
            "photo_proba_quantiles": quantile_table(frame["photo_proba"].to_numpy(), "P(photo)"),
        }
    )


@profiled("laion_natural_clusters")
class NaturalClustersConfig(Config):
    k: int = Field(5443, ge=1, description="clusters (seed: MiniBatchKMeans n_clusters=5,443)")
    sample_size: int = Field(10_000_000, ge=1, description="uniform LAION-natural sample across parts (seed: 10M)")
    n_iter: int = Field(25, ge=1, description="Lloyd iterations (faiss)")
    seed: int = Field(42, description="seed (seed 000: random_state=42)")


def _natural_features(
    context: AssetExecutionContext,
    files: FileStore,
    lance: LanceStore,
    parts: list[str],
    sample: int | None = None,
    seed: int = 0,
) -> tuple[list[str], np.ndarray]:
    """Raw image features of the LAION-natural rows of the given parts (errors name a part
    whose laion_natural is missing, rather than silently skipping it, or parts built with
    another threshold); progress over the parts goes to the step's log. With ``sample`` below
    the number of LAION-natural rows, only a ``sample``-row subset is read, drawn part by part
    in proportion to each part's LAION-natural rows (seeded; :func:`sample_across_parts`) and
    fetched by uid: memory and reads are set by the sample, not by the corpus."""
    require_same_params(context, "laion_natural", parts)
    if sample is not None:
        from laionlab.cluster import sample_across_parts

        natural = [files.read_parquet("laion_natural", f"{p}.parquet", columns=["uid"])["uid"].sort() for p in parts]
        if sample < sum(len(n) for n in natural):
            picks = sample_across_parts([len(n) for n in natural], sample, seed)
            chosen = [u for n, rows in zip(natural, picks) for u in n.gather(rows).to_list()]
            return laion_vectors_for(lance, chosen, log=context.log, raw=True)
    uids, blocks = [], []
    progress = Progress("reading LAION-natural features", len(parts), log=context.log, unit="parts")
    for part in parts:
        natural = files.read_parquet("laion_natural", f"{part}.parquet")
        part_uids, X = laion_vectors(lance, part=part, raw=True)
        rows = pl.DataFrame({"uid": part_uids, "row": np.arange(len(part_uids))}).join(natural.select("uid"), on="uid")
        uids.extend(rows["uid"].to_list())
        blocks.append(X[rows["row"].to_numpy()] if len(part_uids) else np.zeros((0, 0), np.float32))
        progress.update()
    progress.close()
    blocks = [b for b in blocks if b.size]
    return uids, (np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32))


@asset(
    group_name=GROUP,
    deps=[every_partition(laion_natural)],
    kinds={"faiss", "numpy"},
    pool="gpu",
    description="k-means centroids of raw CLIP features of a uniform LAION-natural sample across all parts "
    "(seed 000: k=5,443 on 10M images); cluster sizes and the parts it saw.",
)
def laion_natural_clusters(
    context: AssetExecutionContext, config: NaturalClustersConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.cluster import kmeans

    parts = registered(context, laion_part)
    uids, X = _natural_features(context, files, lance, parts, sample=config.sample_size, seed=config.seed)
    if len(uids) == 0:
        raise Failure(f"no LAION-natural rows in parts {parts}")
    rng = np.random.default_rng(config.seed)  # a no-op draw when the rows read are the sample already
    take = np.sort(rng.choice(len(uids), size=min(config.sample_size, len(uids)), replace=False))
    if config.k > len(take):
        raise Failure(f"k={config.k} is larger than the sample ({len(take)} LAION-natural rows); lower k")
    result = kmeans(X[take], config.k, n_iter=config.n_iter, seed=config.seed)
    files.save_npy(result.centroids, "laion_natural_clusters", "centroids.npy")
    files.write_parquet(
        pl.DataFrame({"cluster": np.arange(config.k), "size": result.sizes}), "laion_natural_clusters", "sizes.parquet"
    )
    files.write_bytes("\n".join(parts).encode(), "laion_natural_clusters", "parts.txt")
    return MaterializeResult(
        metadata={
            "lance_versions_read": MetadataValue.json(lance.versions_read()),
            **params_metadata(config),
            "k": config.k,
            "sample": len(take),
            "natural_rows": sum(
                files.read_parquet("laion_natural", f"{p}.parquet", columns=["uid"]).height for p in parts
            ),
            "parts_seen": ", ".join(parts),
            "inertia": float(result.inertia),
            "backend": result.backend,
            "empty_clusters": int((result.sizes == 0).sum()),
            "cluster_sizes": histogram(
                result.sizes,
                "cluster size",
                f"LAION-natural cluster sizes (k={config.k})",
                files.path("laion_natural_clusters", "sizes.png"),
                bins=min(50, config.k),
                ylabel="clusters",
            ),
            "largest_clusters": largest_clusters(result.sizes),
        }
    )


def load_centroids(files: FileStore) -> np.ndarray:
    return files.load_npy("laion_natural_clusters", "centroids.npy")


@profiled("coverage")
class CoverageConfig(Config):
    min_count: int = Field(3, ge=1, description="a cluster is covered by >= min_count images (seed: count > 2)")
    pca_n_components: float = Field(0.95, gt=0, description="PCA variance kept (<1) or number of components (>=1)")
    pca_q: float = Field(0.95, gt=0, lt=1, description="GEV quantile of the covering set's errors (seed: 0.95)")
    seed_compat: bool = Field(False, description="reproduce the seed script's swapped, all-component PCA call")
    baseline_size: int = Field(6000, ge=2, description="random LAION-natural subset size (seed: 6,000)")
    baseline_seeds: int = Field(10, ge=1, description="number of random subsets (seed: 10, seeds 42..51)")
    prdc_k: int = Field(5, ge=1, description="k of Naeem et al. 2020's PRDC (extra, not in the seed)")
    max_samples: int = Field(100_000, ge=10, description="cap on LAION rows used for PCA/PRDC (seeded sample)")


def _coverage_metadata(files: FileStore, report, datasets: list[str], parts: list[str]) -> dict:
    """coverage's metadata from its :func:`laionlab.coverage.coverage_report`: the coverage
    and cluster-overlap tables, a bar plot of the share of LAION-natural clusters each dataset
    covers, and the random-subset PCA baseline."""
    return {
        "coverage": markdown_table(report.table.with_columns(pl.selectors.float().round(4))),
        "cluster_overlap": markdown_table(report.overlap),
        "cluster_coverage_plot": bar_plot(
            datasets,
            [100 * report.clusters[name].share for name in datasets],
            "share of LAION-natural clusters covered",
            "% of clusters",
            files.path("coverage", "cluster_coverage.png"),
        ),
        "pca_baseline_mean": report.baseline_mean,
        "pca_baseline_sd": report.baseline_sd,
        "baseline_size": report.baseline_size,
        "parts_seen": ", ".join(parts),
    }


@asset(
    group_name=GROUP,
    deps=[laion_natural_clusters, every_partition(reference_embeddings)],
    kinds={"polars", "scikit-learn"},
    description="Coverage of LAION-natural by each reference dataset (cluster occupancy, PCA-reconstruction "
    "coverage with its random-subset baseline, PRDC) and of all of LAION by LAION-natural; one row per pair.",
)
def coverage(
    context: AssetExecutionContext, config: CoverageConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.coverage import coverage_report
    from laionlab.coverage.report import sample_rows

    parts = registered(context, laion_part)
    datasets = registered(context, dataset)
    if not datasets:
        raise Failure("no reference datasets registered (dataset partitions); add them to the catalog")
    natural = sample_rows(
        _natural_features(context, files, lance, parts, sample=config.max_samples, seed=0)[1], config.max_samples, 0
    )
    report = coverage_report(
        {name: reference_vectors(lance, name) for name in datasets},
        natural,
        sample_laion_vectors(context, lance, parts, config.max_samples, seed=1, raw=True)[0],
        load_centroids(files),
        min_count=config.min_count,
        n_components=config.pca_n_components if config.pca_n_components < 1 else int(config.pca_n_components),
        q=config.pca_q,
        seed_compat=config.seed_compat,
        baseline_size=config.baseline_size,
        baseline_seeds=config.baseline_seeds,
        prdc_k=config.prdc_k,
    )
    files.write_parquet(report.table, "coverage", "coverage.parquet")
    files.write_parquet(report.overlap, "coverage", "cluster_overlap.parquet")
    return MaterializeResult(
        metadata={
            "lance_versions_read": MetadataValue.json(lance.versions_read()),
            **params_metadata(config),
            **_coverage_metadata(files, report, datasets, parts),
        }
    )


@profiled("stimulus_sets")
class StimulusSetsConfig(Config):
    n: int = Field(5000, ge=1, description="images per stimulus set (seed: 5,000-10,000 are enough when diverse)")
    strategies: list[str] = Field(
        ["random", "stratified", "kmeans", "kcenter", "greedy_ed", "greedy_ed_kmeans"],
        description="laionlab.sampling strategies (margin/oracle need response targets)",
    )
    pool_size: int = Field(100_000, ge=2, description="LAION-natural rows sampled as the pool (seeded)")
    seed: int = Field(0)


@asset(
    group_name=GROUP,
    deps=[laion_natural_clusters],
    kinds={"parquet", "scikit-learn"},
    description="Stimulus sets of n LAION-natural images drawn by each sampling strategy of seed 000 "
    "(random, stratified, k-means, core-set, greedy effective dimensionality ...), with their diversity.",
)
def stimulus_sets(
    context: AssetExecutionContext, config: StimulusSetsConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.sampling.stimulus import check_strategies, draw_stimulus_sets

    with library_errors("stimulus_sets"):  # before reading any feature
        check_strategies(config.strategies)
    parts = registered(context, laion_part)
    uids, X = _natural_features(context, files, lance, parts)
    with library_errors("stimulus_sets"):
        drawn = draw_stimulus_sets(
            uids, X, load_centroids(files), config.n, config.strategies, config.pool_size,
            seed=config.seed, log=context.log,
        )  # fmt: skip
    table = drawn.diversity
    files.write_parquet(drawn.sets, "stimulus_sets", "sets.parquet")
    files.write_parquet(table, "stimulus_sets", "diversity.parquet")
    return MaterializeResult(
        metadata={
            "lance_versions_read": MetadataValue.json(lance.versions_read()),
            **params_metadata(config),
            "parts_seen": ", ".join(parts),
            "diversity": markdown_table(table.with_columns(pl.selectors.float().round(3))),
            "effective_dim_plot": bar_plot(
                table["strategy"].to_list(),
                table["effective_dim"].to_list(),
                f"effective dimensionality (n={config.n})",
                "ED",
                files.path("stimulus_sets", "effective_dim.png"),
            ),
            "pool": drawn.pool,
        }
    )


@profiled("stimulus_gallery")
class StimulusGalleryConfig(Config):
    strategies: int = Field(8, ge=1, le=16, description="stimulus sets shown (one row each, in stimulus_sets' order)")
    per_strategy: int = Field(6, ge=1, le=16, description="images per set, a seeded choice among its images")
    seed: int = Field(0, ge=0)


@asset(
    group_name=GROUP,
    deps=[stimulus_sets],
    kinds={"jpeg"},
    description="What each sampling strategy picks: a contact sheet with one row per stimulus set, a seeded few of "
    "its images with their captions, read back from only those images' shards.",
)
def stimulus_gallery(
    context: AssetExecutionContext, config: StimulusGalleryConfig, files: FileStore
) -> MaterializeResult:
    from laionlab.gallery import contact_sheet, fetch_thumbnails, pick, row_uids, sheet_rows
    from laionlab.io.metadata import uid_parts

    sets = files.read_parquet("stimulus_sets", "sets.parquet")
    if sets.height == 0:
        raise Failure("stimulus_sets holds no image: nothing to show (rematerialise stimulus_sets)")
    order = sets["strategy"].unique(maintain_order=True).to_list()
    shown = pick(sets, "strategy", config.strategies, config.per_strategy, config.seed, order=order)
    captions = pl.concat(
        [files.read_parquet("laion_metadata", f"{p}.parquet", columns=["uid", "TEXT"]) for p in uid_parts(shown["uid"])]
    )
    shown = shown.join(captions, on="uid", how="left", maintain_order="left")
    rows = sheet_rows(shown, "strategy", "TEXT")
    images = fetch_thumbnails(lambda part: downloaded_shards(files, part), row_uids(rows))
    fig = contact_sheet(rows, images, f"Stimulus sets: {config.per_strategy} images of each strategy's set")
    table = shown.group_by("strategy", maintain_order=True).len().rename({"len": "shown"})
    table = table.join(
        sets.group_by("strategy").len().rename({"len": "set_size"}), on="strategy", maintain_order="left"
    )
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **gallery_metadata(fig, files.path("stimulus_gallery", "stimulus_sets.jpg"), rows, images),
            "strategies_shown": markdown_table(table),
        }
    )


@profiled("ood_generalization")
class OODConfig(Config):
    dim: int = Field(512, ge=2, description="GMM dimension D (seed: 512)")
    cluster_sweep_samples: int = Field(50_000, ge=2, description="N of the cluster sweep (seed: 50,000)")
    cluster_counts: list[int] = Field(
        [1, 2, 5, 10, 21, 46, 100, 215, 464, 1000], description="C values (seed: log-spaced 1..1000)"
    )
    sample_sizes: list[int] = Field([100, 464, 1000, 2154, 4641, 10000, 21544, 100000], description="N values at C=100")
    sample_sweep_clusters: int = Field(100, ge=1, description="C of the sample-size and fraction sweeps (seed: 100)")
    fractions: list[float] = Field([0.2, 0.4, 0.6, 0.8, 1.0], description="share of clusters sampled (N=6,000)")
    fraction_samples: int = Field(6000, ge=2)
    n_trials: int = Field(32, ge=1, description="identification trials (seed: 32)")
    laion: bool = Field(True, description="also run the LAION version on LAION-natural features")
    laion_clusters: int = Field(1000, ge=2, description="k-means k of the LAION version (seed: 1,000)")
    laion_per_cluster: int = Field(500, ge=1)
    laion_groups: int = Field(6, ge=2, description="Ward groups (seed: 6)")
    laion_min_group_size: int = Field(3, ge=1, description="Ward groups with fewer clusters are dropped (seed: 3)")
    laion_train: int = Field(6000, ge=2)
    laion_test: int = Field(1000, ge=1)
    seed: int = Field(0)


def _laion_ood(context: AssetExecutionContext, config: OODConfig, files: FileStore, lance: LanceStore) -> dict:
    """The LAION version: identification from combinations of Ward groups, then each reference
    dataset as the training set against random / stratified LAION-natural samples of its size
    (the seed's NSD 0.235 vs 0.77 comparison)."""
    from laionlab.ood import laion_identification, laion_ood_setup, train_set_identification
    from laionlab.sampling import random as random_sample
    from laionlab.sampling import stratified

    parts = registered(context, laion_part)
    _, X = _natural_features(context, files, lance, parts)
    setup = laion_ood_setup(
        X,
        n_clusters=config.laion_clusters,
        n_groups=config.laion_groups,
        seed=config.seed,
        min_group_size=config.laion_min_group_size,
    )
    rows = laion_identification(
        X,
        per_cluster=config.laion_per_cluster,
        n_train=config.laion_train,
        n_test=config.laion_test,
        seed=config.seed,
        setup=setup,
    )
    laion = pl.DataFrame(rows).with_columns(pl.col("other_groups").cast(pl.List(pl.Int64)))
    files.write_parquet(laion, "ood_generalization", "laion.parquet")
    summary = laion.group_by("n_other_groups").agg(pl.col("accuracy").mean()).sort("n_other_groups")
    comparison = []
    names = registered(context, dataset)
    progress = Progress("OOD identification by training set", 3 * len(names), log=context.log, unit="conditions")
    for name in names:
        ref = reference_vectors(lance, name)
        n = min(len(ref), len(X))
        conditions = {
            name: dict(train_features=ref),
            f"random LAION-natural [{n}]": dict(train_idx=random_sample(X, n, seed=config.seed)),
            f"stratified LAION-natural [{n}]": dict(train_idx=stratified(X, n, labels=setup.labels, seed=config.seed)),
        }
        for condition, train in conditions.items():
            scored = train_set_identification(X, setup, n_test=config.laion_test, seed=config.seed, **train)
            accuracy = float(np.nanmean([r["accuracy"] for r in scored])) if scored else float("nan")
            comparison.append({"dataset": name, "training_set": condition, "n_train": n, "accuracy": accuracy})
            progress.update()
    progress.close()
    table = pl.DataFrame(comparison)
    files.write_parquet(table, "ood_generalization", "reference_vs_laion.parquet")
    return {
        "parts_seen": ", ".join(parts),
        "laion_by_training_groups": markdown_table(summary.with_columns(pl.selectors.float().round(3))),
        "laion_by_training_groups_plot": line_plot(
            summary["n_other_groups"].to_list(),
            {"OOD identification": summary["accuracy"].to_list()},
            "Ward groups trained on",
            "LAION-natural OOD identification",
            files.path("ood_generalization", "laion.png"),
            logx=False,
        ),
        "reference_vs_laion_samples": markdown_table(table.with_columns(pl.selectors.float().round(3))),
        "reference_vs_laion_plot": bar_plot(
            [f"{r['dataset']}: {r['training_set'].split(' [')[0]}" for r in comparison],
            [r["accuracy"] for r in comparison],
            "OOD identification by training set",
            "accuracy",
            files.path("ood_generalization", "reference_vs_laion.png"),
        ),
    }


@asset(
    group_name=GROUP,
    deps=[laion_natural_clusters, every_partition(reference_embeddings)],
    kinds={"numpy", "scikit-learn"},
    description="Out-of-distribution generalisation (seed 000): the GMM simulation sweeps (clusters, samples, "
    "fraction of clusters sampled) and the LAION-natural identification experiment.",
)
def ood_generalization(
    context: AssetExecutionContext, config: OODConfig, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.ood import sweep_cluster_fraction, sweep_clusters, sweep_samples, sweep_table

    common = dict(dim=config.dim, n_trials=config.n_trials, seed=config.seed)
    by_c = sweep_clusters(config.cluster_sweep_samples, config.cluster_counts, **common)
    by_n = sweep_samples(config.sample_sizes, n_clusters=config.sample_sweep_clusters, **common)
    by_f = sweep_cluster_fraction(
        config.fractions, n_samples=config.fraction_samples, n_clusters=config.sample_sweep_clusters, **common
    )
    frames = {"clusters": by_c, "samples": by_n, "fraction": by_f}
    table = sweep_table(frames)
    files.write_parquet(table, "ood_generalization", "gmm.parquet")
    plots = {
        f"gmm_{k}_plot": line_plot(
            table.filter(pl.col("sweep") == k)["x"].to_list(),
            {m: table.filter(pl.col("sweep") == k)[m].to_list() for m in ("id_accuracy", "ood_accuracy")},
            {"clusters": "clusters C", "samples": "samples N", "fraction": "fraction of clusters sampled"}[k],
            f"GMM identification vs {k}",
            files.path("ood_generalization", f"gmm_{k}.png"),
            logx=k != "fraction",
        )
        for k in frames
    }
    metadata = {"gmm": markdown_table(table.with_columns(pl.selectors.float().round(3))), **plots}
    if config.laion:
        metadata.update(_laion_ood(context, config, files, lance))
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **metadata,
            "lance_versions_read": MetadataValue.json(lance.versions_read()),
        }
    )


@profiled("neural_generalization")
class NeuralConfig(Config):
    start_k: int = Field(15, ge=2, description="per-subject k-means starts here and goes down (seed: 15)")
    min_cluster_size: int = Field(500, ge=1, description="until every cluster has this many images (seed: 500)")
    n_train: int = Field(500, ge=2, description="training images per OOD condition (seed: 500)")
    max_combinations: int | None = Field(None, description="cap on training-cluster combinations (seed: all)")
    strategies: list[str] = Field(
        ["random", "stratified", "kmeans", "kcenter", "greedy_ed"], description="sampling strategies"
    )
    sizes: list[int] = Field([100, 500, 1000, 1500, 2000, 3000, 4000, 5000], description="stimulus-set sizes (seed)")
    repeats: int = Field(10, ge=1, description="repeats of random/stratified (seed: 10)")
    n_clusters: int = Field(80, ge=1, description="clusters for stratified sampling (seed: 80 for NSD)")
    betas_scale: float = Field(300.0, gt=0, description="int16 betas are divided by this (NSD: 300)")


def _neural_targets(context: AssetExecutionContext, config: NeuralConfig, lance: LanceStore, spec):
    """:func:`laionlab.ood.neural_targets` of one catalog dataset with responses: its responses
    file and its reference embeddings, with ``config``'s parameters."""
    from laionlab.io.reference import load_responses
    from laionlab.ood import neural_targets

    raw, features = load_responses(spec), reference_vectors(lance, spec.name)
    with library_errors(f"{spec.responses} (dataset {spec.name!r})"):
        return neural_targets(
            spec.name,
            raw,
            features,
            config.strategies,
            betas_scale=config.betas_scale,
            start_k=config.start_k,
            min_cluster_size=config.min_cluster_size,
            n_train=config.n_train,
            max_combinations=config.max_combinations,
            sizes=config.sizes,
            repeats=config.repeats,
            n_clusters=config.n_clusters,
            log=context.log,
        )


@asset(
    group_name=GROUP,
    deps=[every_partition(reference_embeddings)],
    kinds={"scikit-learn"},
    description="Neural targets (seed 000's NSD analysis) for every catalog dataset with responses: encoding "
    "(features → voxels, mean r) and decoding (voxels → cluster) on held-out clusters, "
    "and sampling strategies vs r.",
)
def neural_generalization(
    context: AssetExecutionContext, config: NeuralConfig, catalog: DatasetCatalog, files: FileStore, lance: LanceStore
) -> MaterializeResult:
    from laionlab.ood import neural_tables, strategy_curves

    with_responses = [spec for spec in catalog.datasets().values() if spec.responses]
    if not with_responses:
        return MaterializeResult(
            metadata={**params_metadata(config), "datasets": "none of the catalog datasets has responses"}
        )
    tables = neural_tables([_neural_targets(context, config, lance, spec) for spec in with_responses])
    files.write_parquet(tables.ood, "neural_generalization", "ood.parquet")
    files.write_parquet(tables.sampling, "neural_generalization", "sampling.parquet")
    sizes, curves = strategy_curves(tables.by_strategy, with_responses[0].name)
    plot = line_plot(
        sizes,
        curves,
        "stimulus-set size",
        f"{with_responses[0].name}: normalised encoding r",
        files.path("neural_generalization", "sampling.png"),
        logx=False,
        ylabel="normalised r",
    )
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "ood_by_training_clusters": markdown_table(tables.by_k.with_columns(pl.selectors.float().round(3))),
            "sampling": markdown_table(tables.by_strategy.with_columns(pl.selectors.float().round(3))),
            "sampling_plot": plot,
            "datasets": ", ".join(s.name for s in with_responses),
        }
    )


@profiled("concept_distribution")
class ConceptDistributionConfig(Config):
    case_sensitive: bool = Field(True, description="lemma matching as the LAIONet seed (case-sensitive)")
    smoothing: float = Field(1e-6, ge=0, description="additive smoothing of KL / log ratios")


@asset(
    group_name=GROUP,
    deps=[stimulus_sets, every_partition(laion_natural)],
    kinds={"polars"},
    description="Concept distribution of each stimulus set vs the LAION-natural pool (seed 000 used Gemini "
    "keywords; here the ILSVRC concepts matched in the captions): entropy, KL, JS distance, concepts covered.",
)
def concept_distribution(
    context: AssetExecutionContext, config: ConceptDistributionConfig, files: FileStore
) -> MaterializeResult:
    from laionlab.io.imagenet import ilsvrc_synsets
    from laionlab.ood import caption_concepts, strategy_concept_table

    parts = registered(context, laion_part)
    require_same_params(context, "laion_natural", parts)
    natural = pl.concat([files.read_parquet("laion_natural", f"{p}.parquet").select("uid") for p in parts])
    captions = pl.concat([files.read_parquet("laion_metadata", f"{p}.parquet").select("uid", "TEXT") for p in parts])
    pool = natural.join(captions, on="uid", how="left")
    sets = files.read_parquet("stimulus_sets", "sets.parquet")
    with library_errors("concept_distribution"):
        keywords = caption_concepts(pool, ilsvrc_synsets(), case_sensitive=config.case_sensitive)
        table = strategy_concept_table(sets, keywords, smoothing=config.smoothing)
    files.write_parquet(table, "concept_distribution", "comparison.parquet")
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "parts_seen": ", ".join(parts),
            "comparison": markdown_table(table.with_columns(pl.selectors.float().round(3))),
            "pool_images": pool.height,
            "pool_images_with_concepts": int((keywords["concepts"].list.len() > 0).sum()),
            "js_plot": bar_plot(
                table["strategy"].to_list(),
                table["js_distance"].to_list(),
                "JS distance to the pool's concepts",
                "JS distance",
                files.path("concept_distribution", "js_distance.png"),
            ),
        }
    )


assets = [
    photo_classifier,
    laion_natural,
    laion_natural_clusters,
    coverage,
    stimulus_sets,
    stimulus_gallery,
    ood_generalization,
    neural_generalization,
    concept_distribution,
]
