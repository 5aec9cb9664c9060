"""Tests of the labelled-training path of laionlab.filter.photo (seed 000's photo classifier):
reading a user's labels, mapping URLs to uids, and training on the rows that have features."""

import numpy as np
import polars as pl
import pytest

from laionlab.filter.photo import (
    MIN_LABELLED_ROWS,
    photo_labels_by_uid,
    read_photo_labels,
    train_on_labelled_rows,
    train_photo_classifier,
)


def blobs(n=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(int)
    X = rng.normal(size=(n, d)) + 3.0 * y[:, None] * np.eye(d)[0]
    return X, y


def test_read_photo_labels_by_uid_or_url(tmp_path):
    by_uid = tmp_path / "uid.parquet"
    pl.DataFrame({"uid": ["p:0"], "is_photo": [1]}).write_parquet(by_uid)
    assert read_photo_labels(str(by_uid)).columns == ["uid", "is_photo"]
    by_url = tmp_path / "url.parquet"
    pl.DataFrame({"URL": ["http://a"], "is_photo": [0], "note": ["x"]}).write_parquet(by_url)
    assert read_photo_labels(str(by_url)).columns == ["URL", "is_photo", "note"]


def test_read_photo_labels_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"labels_path .*nowhere.parquet does not exist"):
        read_photo_labels(str(tmp_path / "nowhere.parquet"))
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"URL": ["http://a"], "label": [1]}).write_parquet(bad)
    with pytest.raises(ValueError, match=r"needs columns \(uid or URL\) and is_photo; has \['URL', 'label'\]"):
        read_photo_labels(str(bad))


def test_photo_labels_by_uid_looks_urls_up_part_by_part():
    labels = pl.DataFrame({"URL": ["http://a", "http://b", "http://z"], "is_photo": [1, 0, 1]})
    parts = [
        pl.DataFrame({"uid": ["p0:0", "p0:1"], "URL": ["http://a", "http://c"], "TEXT": ["x", "y"]}),
        pl.DataFrame({"uid": ["p1:0", "p1:1"], "URL": ["http://b", "http://a"], "TEXT": ["x", "y"]}),
    ]
    read = []

    def lazily():
        for frame in parts:
            read.append(frame)
            yield frame

    wanted = photo_labels_by_uid(labels, lazily())
    assert sorted(wanted.select("uid", "is_photo").rows()) == [("p0:0", 1), ("p1:0", 0), ("p1:1", 1)]
    assert len(read) == 2
    # labelled by uid: the metadata is never read
    by_uid = pl.DataFrame({"uid": ["p0:1"], "is_photo": [0], "extra": [1]})
    assert photo_labels_by_uid(by_uid, lazily()).rows() == [("p0:1", 0)] and len(read) == 2
    assert photo_labels_by_uid(labels, []).height == 0


def test_train_on_labelled_rows_is_the_seeds_model_on_the_labelled_rows():
    X, y = blobs()
    uids = [f"p:{i}" for i in range(len(X))]
    # labels for every row but the first two, one label twice (the first is kept), and a uid
    # without features
    labels = pl.DataFrame({"uid": uids[2:] + [uids[5], "p:999"], "is_photo": list(y[2:]) + [1 - y[5], 1]})
    clf, used = train_on_labelled_rows(uids, X, labels, C=0.5, cv=3)
    assert used == uids[2:]
    expected = train_photo_classifier(X[2:], y[2:], C=0.5, cv=3)
    np.testing.assert_allclose(clf.coef, expected.coef)
    assert clf.info["cv_accuracy"] == expected.info["cv_accuracy"] and clf.info["n_train"] == len(X) - 2


def test_train_on_labelled_rows_names_the_problem():
    X, y = blobs()
    uids = [f"p:{i}" for i in range(len(X))]
    few = pl.DataFrame({"uid": uids[: MIN_LABELLED_ROWS - 1], "is_photo": y[: MIN_LABELLED_ROWS - 1]})
    with pytest.raises(ValueError, match=r"only 9 labelled rows of my.parquet have embeddings; need >= 10"):
        train_on_labelled_rows(uids, X, few, name="my.parquet")
    with pytest.raises(ValueError, match=r"X: expected one row per uid \(40\), got 39"):
        train_on_labelled_rows(uids, X[1:], few)
