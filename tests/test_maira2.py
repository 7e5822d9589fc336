"""MAIRA-2 phrase grounding: pre-processing, prompt, box grammar, coordinates, architecture and loading.

References are re-derived here: the image arithmetic by hand and with PIL, the prompt with the
checkpoint's chat template (its Jinja text as published with the model), the boxes by hand on the
100-bin grid of the centre square.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.core.errors import BenchError
from bench.core.predictions import BoxPrediction, validate_prediction
from bench.methods.box_grounders import maira2_image, maira2_text
from bench.methods.box_grounders.maira2 import boxes_from_generation
from bench.methods.box_grounders.maira2_model import (
    build_config,
    build_model,
    checkpoint_name,
    published_name,
    published_state,
    tiny_config_dict,
)
from bench.methods.box_grounders.maira2_text import GenerationError, parse_grounded

#: the chat template of the MAIRA-2 checkpoint (chat_template.json, as in the checkpoint's tiny test mirror
#: optimum-intel-internal-testing/tiny-random-maira2)
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}You are an expert "
    "radiology assistant tasked with interpreting a chest X-ray study. {% for message in messages %}"
    "{% if message[\"role\"] == \"user\" %}USER: {% else %}ASSISTANT: {% endif %}{% for item in message[\"content\"] %}"
    "{% if item[\"type\"] == \"text\" %}{{ item[\"text\"] }}{% elif item[\"type\"] == \"image\" %}<image>{% endif %}"
    "{% endfor %}{% if message[\"role\"] == \"user\" %} {% else %}{{eos_token}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT: {% endif %}")


# ---------------------------------------------------------------- prompt

def test_prompt_is_the_chat_template_on_the_published_messages() -> None:
    import jinja2

    phrase = "Small left pleural effusion."
    messages = [{"role": "user", "content": [
        {"index": None, "text": "Given the current frontal image", "type": "text"},
        {"index": 0, "text": None, "type": "image"},
        {"index": None, "type": "text", "text": " Repeat the following finding as a grounded phrase with bounding boxes "
                                                "indicating all locations where it can be seen in the given chest X-ray "
                                                f"image. Finding: {phrase}"}]}]
    expected = jinja2.Template(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True, eos_token="</s>")
    assert maira2_text.grounding_prompt(phrase) == expected
    assert expected.endswith("Finding: Small left pleural effusion. ASSISTANT: ")


# ---------------------------------------------------------------- pre-processing

def test_grey_rescale_truncates_as_the_published_normalisation() -> None:
    # (v - 0) / 200 * 255: 100 -> 127.5 -> 127, 199 -> 253.725 -> 253
    assert maira2_image.grey_uint8(np.array([[0, 100], [199, 200]], dtype=np.uint16)).tolist() == [[0, 127], [253, 255]]
    assert maira2_image.grey_uint8(np.full((3, 3), 7.0)).tolist() == [[0] * 3] * 3


def test_shortest_edge_resize_and_centre_crop_by_hand() -> None:
    assert maira2_image.resized_shape(60, 40, 30) == (45, 30)     # long side int(30 * 60 / 40)
    assert maira2_image.resized_shape(40, 61, 30) == (30, 45)     # int(45.75)
    block = np.arange(45 * 30).reshape(45, 30)
    crop = maira2_image.centre_crop(block, 30)
    assert crop.shape == (30, 30) and crop[0, 0] == block[7, 0]  # top (45 - 30) // 2 = 7


def test_pixel_values_match_pil_and_the_normalisation_constants() -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 4096, size=(60, 41)).astype(np.uint16)
    got = maira2_image.pixel_values(array, 30)
    assert got.shape == (3, 30, 30) and got.dtype == np.float32
    grey = (array.astype(np.float64) - array.min()) / (array.max() - array.min()) * 255
    resized = np.asarray(Image.fromarray(grey.astype(np.uint8), "L").resize((30, 43), Image.BICUBIC))  # int(30*60/41)
    crop = resized[6:36].astype(np.float64)                                                             # (43 - 30) // 2
    np.testing.assert_allclose(got[0], (crop / 255 - 0.5307) / 0.2583, atol=1e-5)
    assert np.array_equal(got[0], got[2])
    white = maira2_image.pixel_values(np.full((30, 30), 255, dtype=np.uint8), 30)  # constant: all zeros
    assert white[0, 0, 0] == pytest.approx((0 - 0.5307) / 0.2583, abs=1e-6)


def test_pixel_values_match_transformers_bit_image_processor() -> None:
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    processor = BitImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30},
                                     do_center_crop=True, do_convert_rgb=True, do_normalize=True, do_rescale=True,
                                     do_resize=True, image_mean=[0.5307] * 3, image_std=[0.2583] * 3, resample=3,
                                     rescale_factor=1 / 255)
    array = np.random.default_rng(1).integers(0, 256, size=(52, 77)).astype(np.uint8)
    grey = Image.fromarray(maira2_image.grey_uint8(array), "L")
    reference = np.asarray(processor(images=[grey], return_tensors="np")["pixel_values"][0])
    np.testing.assert_allclose(maira2_image.pixel_values(array, 30), reference, atol=1e-5)


# ---------------------------------------------------------------- box grammar

def test_one_phrase_one_box() -> None:
    [p] = parse_grounded("<obj>Left basal opacity<box><x10><y20><x30><y40></box></obj>")
    assert p.text == "Left basal opacity"
    assert p.boxes == ((0.105, 0.205, 0.305, 0.405),)


def test_several_boxes_and_phrases_and_whitespace() -> None:
    text = (" <obj>Bilateral effusions <box><x5><y60><x30><y90></box> <box><x70><y61><x95><y99></box></obj>"
            "<obj>No pneumothorax</obj>\n")
    first, second = parse_grounded(text)
    assert first.text == "Bilateral effusions" and len(first.boxes) == 2
    assert first.boxes[1] == (0.705, 0.615, 0.955, 0.995)
    assert second.text == "No pneumothorax" and second.boxes is None
    assert maira2_text.boxes_of([first, second], "first") == first.boxes
    assert maira2_text.boxes_of([second, first], "first") == ()
    assert maira2_text.boxes_of([second, first], "all") == first.boxes


@pytest.mark.parametrize("text, why", [
    ("Left basal opacity.", "no grounded phrase"),
    ("", "empty generation"),
    ("<obj>opacity<box><x1><y2><x3><y4></box>", "never closed"),
    ("<obj>opacity<box><x1><y2><x3><y4></obj>", "never closed"),
    ("<obj>opacity<box><x1><y2><x3></box></obj>", "is not <x..><y..><x..><y..>"),
    ("<obj>opacity<box><x1><y2><x100><y4></box></obj>", "outside 0..99"),
    ("Finding: <obj>opacity</obj>", "text outside"),
    ("<obj>opacity</box></obj>", "without <box>"),
])
def test_malformed_generations_are_errors(text: str, why: str) -> None:
    with pytest.raises(GenerationError, match=why):
        parse_grounded(text)


# ---------------------------------------------------------------- coordinates

def test_bins_map_to_original_pixels_through_the_centre_square() -> None:
    # 700 x 512: square side 512 at x offset (700 - 512) // 2 = 94; bins (10, 20, 60, 70) are the centres
    # 0.105, 0.205, 0.605, 0.705: x 0.105 * 512 + 94 = 147.76 -> 147, y 104.96 -> 104, x 403.76 -> 403, y 360.96 -> 360
    assert maira2_text.to_pixels((0.105, 0.205, 0.605, 0.705), 700, 512) == (147, 104, 403, 360)
    # 300 x 500: side 300 at y offset 100; bins 0 and 99: 1.5 -> 1, 101.5 -> 101, 298.5 -> 298, 398.5 -> 398
    assert maira2_text.to_pixels((0.005, 0.005, 0.995, 0.995), 300, 500) == (1, 101, 298, 398)


def test_generation_to_prediction() -> None:
    text = "<obj>Right effusion<box><x10><y20><x60><y70></box><box><x0><y0><x99><y99></box></obj>"
    pred = boxes_from_generation(text, 700, 512)
    # second box: bins 0 and 99 -> 0.005 * 512 + 94 = 96.56 -> 96, 2.56 -> 2, 0.995 * 512 + 94 = 603.44 -> 603,
    # 509.44 -> 509: (96, 2, 603 - 96, 509 - 2)
    assert pred == BoxPrediction(boxes=((147.0, 104.0, 256.0, 256.0), (96.0, 2.0, 507.0, 507.0)))
    validate_prediction(pred, 700, 512, "s")
    failed = boxes_from_generation("no boxes here", 700, 512)
    assert failed.boxes == () and failed.failure.startswith("unparsable generation: no grounded phrase")
    assert boxes_from_generation("<obj>Effusion</obj>", 700, 512).failure == "the grounded phrase came without a box"
    flat = boxes_from_generation("<obj>x<box><x50><y50><x50><y60></box></obj>", 700, 512)
    assert flat.boxes == () and "no area" in flat.failure


# ---------------------------------------------------------------- architecture and checkpoint

def test_published_names_round_trip() -> None:
    assert checkpoint_name("language_model.model.layers.0.mlp.up_proj.weight") == \
        "model.language_model.layers.0.mlp.up_proj.weight"
    assert checkpoint_name("language_model.lm_head.weight") == "lm_head.weight"
    assert checkpoint_name("vision_tower.encoder.layer.1.norm1.bias") == "model.vision_tower.encoder.layer.1.norm1.bias"
    assert checkpoint_name("multi_modal_projector.layers.6.weight") == "model.multi_modal_projector.layers.6.weight"
    model = build_model(build_config(tiny_config_dict(64, image_size=28)), seed=0)
    assert {checkpoint_name(k) for k in published_state(model)} == set(model.state_dict())
    assert all(published_name(checkpoint_name(k)) == k for k in published_state(model))


def test_image_features_are_the_layernormed_backbone_output_without_cls() -> None:
    model = build_model(build_config(tiny_config_dict(64, image_size=28)), seed=0)
    assert [type(m).__name__ for m in model.model.multi_modal_projector.layers] == \
        ["Linear", "GELUActivation", "Linear", "GELUActivation", "Linear", "GELUActivation", "Linear"]
    pixels = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        got = model.model.get_image_features(pixel_values=pixels).pooler_output
        tower = model.model.vision_tower
        hidden = tower(pixels, output_hidden_states=True).hidden_states[-1]
        expected = model.model.multi_modal_projector(tower.layernorm(hidden)[:, 1:])
    assert len(got) == 2 and got[0].shape == (4, 32)
    torch.testing.assert_close(torch.stack(got), expected)


def _published_folder(tmp_path, drop: str = ""):
    """A MAIRA-2 checkpoint folder in the published layout, at toy size: two safetensors shards with an index."""
    from safetensors.torch import save_file

    from bench.methods.box_grounders.maira2_tiny import tiny_tokenizer, tiny_vocab

    vocab = tiny_vocab()
    raw = tiny_config_dict(len(vocab), image_size=28)
    raw["image_token_index"] = vocab["<image>"]
    model = build_model(build_config(raw), seed=3)
    state = {k: v.contiguous() for k, v in published_state(model).items() if k != drop}
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    folder = tmp_path / "maira-2"
    folder.mkdir()
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(folder / file))
    index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps(raw))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 28},
        "crop_size": {"height": 28, "width": 28}, "image_mean": [0.5307] * 3, "image_std": [0.2583] * 3,
        "resample": 3, "rescale_factor": 0.00392156862745098, "do_center_crop": True, "do_resize": True,
        "do_rescale": True, "do_normalize": True, "do_convert_rgb": True}))
    tiny_tokenizer().save_pretrained(str(folder))
    return folder, model


def _method(folder=None, random_weights=False, content=None, **params):
    from bench.methods import RunContext, backend_class
    from bench.methods.specs import apply_overrides, load_method_spec

    sets = [f"params.{k}={v}" for k, v in params.items()]
    if folder is not None:
        sets.append(f"weights.model.local_dir={folder}")
    if content is not None:
        sets.append(f"weights.model.content={content}")
    spec = apply_overrides(load_method_spec("maira2"), sets)
    return backend_class(spec["backend"])(spec, RunContext(random_weights=random_weights, seed=0))


def test_published_checkpoint_loads_every_tensor(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, reference = _published_folder(tmp_path)
    method = _method(folder, content="''", image_size=28, dtype='"fp32"')
    method.prepare()
    loaded = method.model.state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert {f.filename for f in method.checkpoints} >= {"model-00001-of-00002.safetensors", "config.json"}
    assert all(c["status"] == "unverified" for c in method.checks)


def test_a_toy_checkpoint_is_not_the_published_model(tmp_path) -> None:
    folder, _ = _published_folder(tmp_path)
    with pytest.raises(BenchError, match="is not maira-2/model: config config.json: .*image_token_index"):
        _method(folder, image_size=28, dtype='"fp32"').prepare()


def test_a_checkpoint_missing_a_tensor_is_one_line(tmp_path) -> None:
    folder, _ = _published_folder(tmp_path, drop="multi_modal_projector.layers.4.bias")
    with pytest.raises(BenchError, match="model.multi_modal_projector.layers.4.bias") as err:
        _method(folder, content="''", image_size=28, dtype='"fp32"').prepare()
    assert "\n" not in str(err.value)


def test_preprocessor_of_another_size_is_refused(tmp_path) -> None:
    folder, _ = _published_folder(tmp_path)
    with pytest.raises(BenchError, match="crop_size|size"):
        _method(folder, content="''", image_size=518, dtype='"fp32"').prepare()


def test_missing_gated_weights_offline_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(BenchError, match="gated") as err:
        _method().prepare()
    assert "\n" not in str(err.value) and "microsoft/maira-2" in str(err.value)


# ---------------------------------------------------------------- end to end on the phantom (random weights)

@pytest.fixture(scope="module")
def phantom():
    from bench.datasets import get_dataset

    dataset = get_dataset("phantom")
    return dataset, list(dataset.samples())[:2]


def test_random_weights_predict_boxes_or_record_a_failure(phantom) -> None:
    dataset, samples = phantom
    preds = _method(random_weights=True, max_new_tokens=12).boxes(samples, dataset)
    again_method = _method(random_weights=True, max_new_tokens=12)
    again = again_method.boxes(samples, dataset)
    assert preds == again and len(preds) == 2
    for sample, pred in zip(samples, preds):
        assert isinstance(pred, BoxPrediction)
        assert pred.failure if not pred.boxes else pred.failure is None
        validate_prediction(pred, sample.width, sample.height, sample.sample_id)
    assert set(again_method.provenance()["generations"]) == {s.sample_id for s in samples}


def test_boxes_follow_the_generation(phantom, monkeypatch) -> None:
    dataset, samples = phantom
    method = _method(random_weights=True, max_new_tokens=4)
    prompts = []

    def fake(array, prompt):
        prompts.append(prompt)
        return "<obj>Opacity<box><x10><y20><x60><y70></box></obj>"

    method.prepare(dataset)
    monkeypatch.setattr(method, "generate", fake)
    preds = method.boxes(samples, dataset)
    s = samples[0]
    side = min(s.width, s.height)
    dx, dy = (s.width - side) // 2, (s.height - side) // 2
    x0, y0 = int(0.105 * side + dx), int(0.205 * side + dy)
    assert preds[0].boxes == ((x0, y0, int(0.605 * side + dx) - x0, int(0.705 * side + dy) - y0),)
    assert prompts[0].count("<image>") == 4 and prompts[0].endswith(f"Finding: {s.phrase} ASSISTANT: ")
