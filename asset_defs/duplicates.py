"""Exact duplicate images (issue 19), as img2dataset / NeMo Curator users detect them: the same
downloaded bytes (img2dataset's sha256 of every success) and, optionally, the same or a close
64-bit perceptual hash (pHash). Per ``laion_part``: ``image_hashes`` hashes the part's
downloads into a row table and two small sorted hash → first-uid indexes;
``exact_duplicates`` compares the part's rows with every earlier part's indexes (read one part
at a time, hash columns only) and with its own earlier rows, as ``laion_dedup`` does for
semantic duplicates: the first occurrence in (part, row) order is kept, so appending a part never
changes an earlier part's result. ``duplicates_gallery`` shows a seeded few copies beside the
row they copy. The science is in :mod:`laionlab.dedup.exact`.
"""

import polars as pl
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset
from pydantic import Field

from asset_defs.errors import library_errors
from asset_defs.ingest import STATUS_FILE, downloaded_shards, laion_images
from asset_defs.lineage import wait_for_earlier_parts
from asset_defs.metadata import bar_plot, gallery_metadata, markdown_table, nothing_to_show
from asset_defs.partitions import every_partition, laion_part, registered
from asset_defs.profile import params_metadata, profiled
from resources import FileStore

GROUP = "exact_duplicates"
HASHES = "image_hashes"
INDEX_COLUMNS = ["uid", "row", "copies"]


@profiled("image_hashes")
class ImageHashesConfig(Config):
    phash: bool = Field(
        True,
        description="also decode every downloaded image and store its 64-bit pHash (needed by exact_duplicates' "
        "phash_distance); false: sha256 only, nothing decoded",
    )


def _index_name(part: str, column: str) -> str:
    return f"{part}.{column}.parquet"


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[laion_images],
    kinds={"parquet"},
    description="sha256 (img2dataset's, of the bytes as downloaded) and pHash of every downloaded image of the part, "
    "with the part's sorted hash → first-uid indexes that exact_duplicates reads.",
)
def image_hashes(context: AssetExecutionContext, config: ImageHashesConfig, files: FileStore) -> MaterializeResult:
    from laionlab.dedup.exact import hash_index, images_phash, part_hash_table, within_part_groups
    from laionlab.io.download import count_successes
    from laionlab.io.shards import iter_shard_images

    part = context.partition_key
    images = files.current_version("laion_images", part)
    status = images.read_parquet(STATUS_FILE)
    phashes = None
    if config.phash:
        samples = iter_shard_images(images.glob("*.tar"))
        phashes = images_phash(((s.uid, s.image) for s in samples), total=count_successes(status), log=context.log)
    with library_errors(f"image_hashes[{part}]", hint=": re-materialise laion_images for this part"):
        table = part_hash_table(status, phashes)
    # the indexes first, then the row table that says the part is complete
    for column in ("sha256", "phash"):
        files.write_parquet(hash_index(table, column), HASHES, _index_name(part, column))
    path = files.write_parquet(table, HASHES, f"{part}.parquet")
    groups = within_part_groups(table)
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "path": path,
            "rows_hashed": table.height,
            "distinct_images": table["sha256"].n_unique(),
            "duplicate_groups_in_part": groups,
            "phashes": table.height - table["phash"].null_count(),
            "undecoded": table["phash"].null_count() if config.phash else 0,
        }
    )


@profiled("exact_duplicates")
class ExactDuplicatesConfig(Config):
    phash_distance: int | None = Field(
        None,
        ge=0,
        le=16,
        description="also mark a row whose pHash is within this many bits (Hamming) of an earlier row's: 0 = identical "
        "pHash (re-encoded copies), a few bits = resized / recompressed copies; unset: identical bytes (sha256) only. "
        "Solid-colour images share a pHash, so this is off by default",
    )
    top_groups: int = Field(20, ge=1, description="largest duplicate groups listed in the metadata")


def _earlier_indexes(files: FileStore, parts: list[str], with_phash: bool):
    """(part, sha256 index, pHash index or None) of each earlier part, read one at a time."""
    for part in parts:
        sha = files.read_parquet(HASHES, _index_name(part, "sha256"), columns=["sha256", *INDEX_COLUMNS])
        ph = files.read_parquet(HASHES, _index_name(part, "phash"), columns=["phash", *INDEX_COLUMNS])
        if with_phash and ph.height == 0 and sha.height:
            raise Failure(f"image_hashes[{part}] holds no pHash (built with phash: false): re-materialise it")
        yield part, sha, ph if with_phash else None


@asset(
    partitions_def=laion_part,
    group_name=GROUP,
    deps=[image_hashes],
    kinds={"parquet"},
    description="The part's duplicate images (uid, duplicate_of, part): rows whose bytes (or, with phash_distance, "
    "pHash) match an earlier row — earlier parts, then earlier rows of the part; the first occurrence is kept.",
)
def exact_duplicates(
    context: AssetExecutionContext, config: ExactDuplicatesConfig, files: FileStore
) -> MaterializeResult:
    """The part's rows against every earlier part's image_hashes indexes (parts in sorted order,
    one part's hash columns in memory at a time, only rows still unmatched), then against its own
    earlier rows (:func:`laionlab.dedup.exact.find_duplicates`)."""
    from laionlab.dedup.exact import counts_by_part, find_duplicates, largest_groups

    part = context.partition_key
    parts = registered(context, laion_part)
    order = parts[: parts.index(part) + 1]
    read = wait_for_earlier_parts(context, image_hashes.key, order)
    table = files.read_parquet(HASHES, f"{part}.parquet")
    distance = config.phash_distance
    if distance is not None and table.height and table["phash"].null_count() == table.height:
        raise Failure(f"image_hashes[{part}] holds no pHash (built with phash: false): re-materialise it")
    with library_errors(f"exact_duplicates[{part}]"):
        found = find_duplicates(table, part, _earlier_indexes(files, order[:-1], distance is not None), distance)
    path = files.write_parquet(found, GROUP, f"{part}.parquet")
    by_part = counts_by_part(found, order)
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            "path": path,
            "rows": table.height,
            "duplicates": found.height,
            "duplicate_share": round(found.height / table.height, 4) if table.height else 0.0,
            "by_match": markdown_table(found.group_by("match").len().sort("match")),
            "hashes_read": read,
            "duplicates_by_part": markdown_table(by_part),
            "largest_groups": markdown_table(largest_groups(found, config.top_groups)),
            "duplicates_plot": bar_plot(
                by_part["part"].to_list(),
                by_part["duplicates"].to_list(),
                f"{part}: duplicates by the part of their kept copy",
                "rows",
                files.path(GROUP, f"{part}.png"),
            ),
        }
    )


# --- duplicates_gallery ----------------------------------------------------------------------


@profiled("duplicates_gallery")
class DuplicatesGalleryConfig(Config):
    pairs: int = Field(8, ge=1, le=32, description="copies shown, each beside the row it copies")
    pairs_per_row: int = Field(2, ge=1, le=6, description="pairs per row of the sheet")
    seed: int = Field(0, ge=0, description="seeds the choice of the pairs")


@asset(
    group_name=GROUP,
    deps=[every_partition(exact_duplicates)],
    kinds={"jpeg"},
    description="What exact_duplicates found: a contact sheet of a seeded few copies, each beside the row it copies "
    "(sha256 or pHash match), read back from only those images' shards.",
)
def duplicates_gallery(
    context: AssetExecutionContext, config: DuplicatesGalleryConfig, files: FileStore
) -> MaterializeResult:
    from laionlab.gallery import contact_sheet, fetch_thumbnails, pair_rows, row_uids, sample_rows

    parts = [p for p in registered(context, laion_part) if files.exists(GROUP, f"{p}.parquet")]
    columns = ["uid", "duplicate_of", "match", "distance"]
    found = pl.concat([files.read_parquet(GROUP, f"{p}.parquet", columns=columns) for p in parts]) if parts else None
    if found is None or found.height == 0:
        why = f"no duplicates in parts {', '.join(parts)}" if parts else "exact_duplicates has no part yet"
        return MaterializeResult(metadata={**params_metadata(config), **nothing_to_show(why)})
    how = pl.when(pl.col("match") == "sha256").then(pl.lit("same bytes"))
    shown = sample_rows(found, config.pairs, config.seed).with_columns(
        copy=how.otherwise(pl.format("pHash, {} bits", pl.col("distance"))), original=pl.lit("original")
    )
    rows = pair_rows(shown, "uid", "duplicate_of", "copy", "original", config.pairs_per_row, "copy ↔ original")
    images = fetch_thumbnails(lambda part: downloaded_shards(files, part), row_uids(rows))
    fig = contact_sheet(
        rows, images, f"Exact duplicates: {shown.height} of {found.height:,} copies beside their original"
    )
    return MaterializeResult(
        metadata={
            **params_metadata(config),
            **gallery_metadata(fig, files.path("duplicates_gallery", "duplicates.jpg"), rows, images),
            "duplicates": found.height,
            "pairs_shown": markdown_table(shown.select("uid", "duplicate_of", "match", "distance")),
            "parts_seen": ", ".join(parts),
        }
    )


assets = [image_hashes, exact_duplicates, duplicates_gallery]
