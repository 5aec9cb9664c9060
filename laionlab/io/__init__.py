"""Reading and writing: LAION metadata parts, img2dataset downloads (with the URL policy and the
network guard), webdataset shards, LanceDB tables, files under a data root (local or fsspec),
precomputed embedding releases, the reference-dataset catalog and the ILSVRC synsets."""
