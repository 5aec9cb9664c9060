import h5py
import numpy as np
import pytest
from PIL import Image

from laionlab.io.reference import CatalogError, ReferenceImages, list_items, load_catalog


def catalog(tmp_path, body):
    path = tmp_path / "datasets.yaml"
    path.write_text(body)
    return path


def test_demo_catalog_lists_folder_and_hdf5(demo):
    from pathlib import Path

    specs = load_catalog(Path(demo.root) / "datasets.yaml")
    assert sorted(specs) == ["demo_broad", "demo_imagenet_captions", "demo_imagenet_val", "demo_narrow"]
    broad = list_items(specs["demo_broad"])
    assert len(broad.sources) == 60 and set(broad.labels) <= {"photo", "clipart", "text"}
    assert specs["demo_narrow"].kind == "hdf5" and len(list_items(specs["demo_narrow"]).sources) == 60
    # LAIONet's labelled sets: folders named by wnid, and the same images with captions
    val, captions = list_items(specs["demo_imagenet_val"]), list_items(specs["demo_imagenet_captions"])
    assert len(set(val.labels)) == 8 and all(label.startswith("n0") for label in val.labels)
    assert sorted(zip(captions.sources, captions.labels)) == sorted(zip(val.sources, val.labels))
    assert all(captions.captions)


def test_hdf5_is_read_in_slices_and_split_across_workers(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, size=(10, 8, 8, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "s.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=data)
    spec = load_catalog(catalog(tmp_path, "datasets:\n  s:\n    kind: hdf5\n    path: s.hdf5\n"))["s"]
    ds = ReferenceImages(spec, preprocess=lambda im: np.asarray(im), chunk=3)
    got = {uid: arr for arr, uid in ds}
    assert sorted(got) == [f"s:{i:09d}" for i in range(10)]
    for i in range(10):
        np.testing.assert_array_equal(got[f"s:{i:09d}"], data[i])


def test_catalog_errors_name_the_entry(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "none.yaml")
    with pytest.raises(CatalogError, match="'ghost': path does not exist"):
        load_catalog(catalog(tmp_path, "datasets:\n  ghost:\n    kind: image_folder\n    path: nowhere\n"))
    with h5py.File(tmp_path / "x.hdf5", "w") as f:
        f.create_dataset("other", data=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(CatalogError, match="no dataset 'imgBrick'"):
        load_catalog(catalog(tmp_path, "datasets:\n  x:\n    kind: hdf5\n    path: x.hdf5\n"))
    with pytest.raises(CatalogError, match="kind must be"):
        load_catalog(catalog(tmp_path, "datasets:\n  x:\n    kind: zip\n    path: x.hdf5\n"))


def test_mixed_sizes_are_refused_when_a_size_is_expected(tmp_path):
    for i, size in enumerate([(8, 8), (8, 8), (9, 8)]):
        (tmp_path / "imgs" / "a").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(tmp_path / "imgs" / "a" / f"{i}.png")
    body = 'datasets:\n  f:\n    kind: image_folder\n    path: imgs\n    glob: "*/*.png"\n    expected_size: [8, 8]\n'
    spec = load_catalog(catalog(tmp_path, body))["f"]
    with pytest.raises(ValueError, match=r"2\.png is 8×9, expected 8×8"):
        list(ReferenceImages(spec, preprocess=lambda im: im))


def test_responses_file_is_validated(tmp_path, demo):
    from pathlib import Path

    from laionlab.io.reference import load_responses

    spec = load_catalog(Path(demo.root) / "datasets.yaml")["demo_broad"]
    r = load_responses(spec)
    assert r["betas"].shape[0] == len(r["session"]) == len(r["stimulus_ids"]) and r["stimulus_ids"].max() < 60
    np.savez(tmp_path / "bad.npz", betas=np.zeros((3, 2)), session=np.zeros(3))
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / "a" / "0.png")
    body = 'datasets:\n  f:\n    kind: image_folder\n    path: imgs\n    glob: "*/*.png"\n    responses: bad.npz\n'
    with pytest.raises(CatalogError, match=r"'f'.*bad.npz lacks arrays \['stimulus_ids'\]"):
        load_catalog(catalog(tmp_path, body))


def test_catalog_on_an_object_store_is_refused_by_name(tmp_path):
    with pytest.raises(CatalogError, match="dataset catalog s3://bucket/datasets.yaml is not on a local filesystem"):
        load_catalog("s3://bucket/datasets.yaml")
    body = "datasets:\n  remote:\n    kind: image_folder\n    path: s3://bucket/things\n"
    with pytest.raises(CatalogError, match="dataset 'remote' path s3://bucket/things is not on a local filesystem"):
        load_catalog(catalog(tmp_path, body))


def test_hdf5_of_float_pixels_is_refused_naming_the_dataset(tmp_path):
    with h5py.File(tmp_path / "f.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=np.random.default_rng(0).random((3, 4, 4, 3), dtype=np.float32))
    with pytest.raises(CatalogError, match=r"dataset 'f'.*f.hdf5:imgBrick holds float32, expected uint8"):
        load_catalog(catalog(tmp_path, "datasets:\n  f:\n    kind: hdf5\n    path: f.hdf5\n"))


def test_one_bad_entry_fails_only_itself(tmp_path):
    from resources import DatasetCatalog

    (tmp_path / "imgs" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a" / "0.jpg")
    body = (
        "datasets:\n  good:\n    kind: image_folder\n    path: imgs\n"
        "  ghost:\n    kind: image_folder\n    path: nowhere\n"
    )
    resource = DatasetCatalog(path=str(catalog(tmp_path, body)))
    assert sorted(resource.datasets()) == ["ghost", "good"]  # both are partitions
    assert len(list_items(resource.get("good")).sources) == 1
    with pytest.raises(CatalogError, match="'ghost': path does not exist"):
        resource.get("ghost")
