import json

import pytest
import torch

from laionlab.embed.model import PROJECT_MODELS, ClipSpec, load_clip, validate_spec


def test_project_models_are_registered_and_deterministic():
    assert {"laionlab-tiny", "laionlab-tiny-conv"} <= set(PROJECT_MODELS)
    a, b = load_clip(ClipSpec("laionlab-tiny", device="cpu")), load_clip(ClipSpec("laionlab-tiny", device="cpu"))
    tokens = a.tokenizer(["a photo of a goldfish"])
    with torch.no_grad():
        assert torch.equal(a.model.encode_text(tokens), b.model.encode_text(tokens))
    c = load_clip(ClipSpec("laionlab-tiny", device="cpu", seed=1))
    with torch.no_grad():
        assert not torch.equal(a.model.encode_text(tokens), c.model.encode_text(tokens))
    assert a.embed_dim == 64 and a.model_id == "laionlab-tiny/random-seed0"


def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown open_clip model 'ViT-B-33'.*ViT-B-32"):
        validate_spec(ClipSpec("ViT-B-33"))


def test_unknown_pretrained_tag_lists_available_tags():
    with pytest.raises(ValueError, match=r"no pretrained tag 'laion5b'.*laion2b_s34b_b79k"):
        validate_spec(ClipSpec("ViT-B-32", pretrained="laion5b"))


def test_missing_checkpoint_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        validate_spec(ClipSpec("laionlab-tiny", checkpoint=str(tmp_path / "nowhere.pt")))
    with pytest.raises(ValueError, match="either pretrained"):
        validate_spec(ClipSpec("ViT-B-32", pretrained="openai", checkpoint=str(tmp_path / "x.pt")))


def test_local_checkpoint_loads_the_saved_weights(tmp_path):
    """The real checkpoint path: weights saved from one model come back in another."""
    source = load_clip(ClipSpec("laionlab-tiny", device="cpu", seed=5))
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": source.model.state_dict()}, path)
    loaded = load_clip(ClipSpec("laionlab-tiny", checkpoint=str(path), device="cpu"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.encode_image(x), source.model.encode_image(x))
    assert loaded.model_id == "laionlab-tiny/ckpt:tiny.pt"


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=r"could not load weights .*broken.pt.*laionlab-tiny"):
        load_clip(ClipSpec("laionlab-tiny", checkpoint=str(path), device="cpu"))


def test_pretrained_weights_offline_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=1"):
        load_clip(ClipSpec("RN50", pretrained="openai", device="cpu"))


def test_device_and_precision(tmp_path):
    with pytest.raises(ValueError, match="device must be"):
        load_clip(ClipSpec("laionlab-tiny", device="tpu"))
    with pytest.raises(ValueError, match="precision must be"):
        load_clip(ClipSpec("laionlab-tiny", device="cpu", precision="int4"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            load_clip(ClipSpec("laionlab-tiny", device="cuda"))
        assert load_clip(ClipSpec("laionlab-tiny", device="cpu", precision="fp16")).dtype == torch.float32
    bf16 = load_clip(ClipSpec("laionlab-tiny", device="cpu", precision="bf16"))
    assert bf16.dtype == torch.bfloat16
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    json.dumps(bf16.spec.__dict__)  # specs are plain data
