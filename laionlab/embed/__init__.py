"""open_clip models (pretrained tags, checkpoints, the project's tiny random configs), the
embedding loop over webdataset shards and reference sets, and the health checks of the vectors.
Submodules import torch: import them where the work is, not here."""
