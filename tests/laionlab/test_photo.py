import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from laionlab.filter.photo import (
    LinearClassifier,
    import_classifier,
    keep_natural,
    train_photo_classifier,
    zero_shot_classifier,
)


def blobs(n=200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(int)
    X = rng.normal(size=(n, d)) + 2.5 * y[:, None] * np.eye(d)[0]
    return X, y


def test_trained_classifier_is_the_seeds_logistic_regression():
    X, y = blobs()
    clf = train_photo_classifier(X, y)
    ref = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000, random_state=0).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X)[:, 1], rtol=1e-6)
    assert 0.8 < clf.info["cv_accuracy"] <= 1.0 and len(clf.info["cv_folds"]) == 5


def test_save_load_roundtrip_without_pickle(tmp_path):
    X, y = blobs()
    clf = train_photo_classifier(X, y)
    npz, meta = clf.save(tmp_path / "clf")
    with np.load(npz, allow_pickle=False) as data:
        assert set(data.keys()) == {"coef", "intercept"}
    back = LinearClassifier.load(tmp_path / "clf")
    np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X))
    assert back.info["cv_accuracy"] == clf.info["cv_accuracy"] and back.input == "raw"


def test_zero_shot_prefers_the_photo_prompts():
    rng = np.random.default_rng(1)
    photo, other = rng.normal(size=(3, 8)), rng.normal(size=(4, 8))
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    clf = zero_shot_classifier(unit(photo), unit(other))
    p = clf.predict_proba(np.stack([unit(photo.mean(0)), unit(other.mean(0))]))
    assert p[0] > 0.99 and p[1] < 0.01 and clf.input == "unit"


def test_import_from_npz_and_skops(tmp_path):
    X, y = blobs()
    ref = LogisticRegression(max_iter=1000).fit(X, y)
    np.savez(tmp_path / "mine.npz", coef=ref.coef_, intercept=ref.intercept_)
    np.testing.assert_allclose(import_classifier(tmp_path / "mine.npz").predict_proba(X), ref.predict_proba(X)[:, 1])
    import skops.io as sio

    sio.dump(ref, tmp_path / "mine.skops")
    np.testing.assert_allclose(import_classifier(tmp_path / "mine.skops").predict_proba(X), ref.predict_proba(X)[:, 1])
    with pytest.raises(FileNotFoundError, match="nothing"):
        import_classifier(tmp_path / "nothing.npz")
    # the same files on an object store (fsspec's memory filesystem)
    import fsspec

    fs = fsspec.filesystem("memory")
    for name in ("mine.npz", "mine.skops"):
        fs.pipe(f"memory://laionlab-photo/{name}", (tmp_path / name).read_bytes())
        clf = import_classifier(f"memory://laionlab-photo/{name}")
        assert clf.source == f"imported:{name}"
        np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X)[:, 1])


def test_threshold_is_strict_and_validated():
    assert keep_natural(np.array([0.74, 0.75, 0.76])).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="threshold"):
        keep_natural(np.array([0.5]), threshold=1.5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="both classes"):
        train_photo_classifier(np.zeros((4, 2)), np.ones(4))
    clf = LinearClassifier(np.ones(3), 0.0)
    with pytest.raises(ValueError, match=r"expects \(n, 3\)"):
        clf.predict_proba(np.zeros((2, 4)))
