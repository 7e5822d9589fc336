"""Anatomy-grounded prompts: phrase parsing, prompt building, the location-token codebook file and
its injection into a text encoder's token-embedding table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_unets import TINY_MONAI

from bench.core.errors import BenchError
from bench.methods.ldm.anatomy.codebook import (
    build_prompt,
    codebook_provenance,
    explicit_locations,
    initial_codebook,
    inject_codebook,
    load_codebook,
    load_rules,
    location_vocabulary,
    parse_phrase,
    prompt_positions,
    random_codebook,
    save_codebook,
)

R, L = "right", "left"

PHRASES = [
    ("small right apical pneumothorax", ["right_apical_zone"], "pneumothorax"),
    ("pneumothorax at the left apex", ["left_apical_zone"], "pneumothorax"),
    ("left pneumothorax along the lateral chest wall", ["left_lung"], "pneumothorax"),
    ("bibasilar atelectasis", ["right_lower_lung_zone", "left_lower_lung_zone"], "atelectasis"),
    ("linear atelectasis at the right lung base", ["right_lower_lung_zone"], "atelectasis"),
    ("left basilar atelectasis", ["left_lower_lung_zone"], "atelectasis"),
    ("left lower lobe consolidation", ["left_lower_lung_zone"], "consolidation"),
    ("consolidation in the right middle lobe", ["right_mid_lung_zone"], "consolidation"),
    ("Right upper lobe collapse.", ["right_upper_lung_zone"], "atelectasis"),
    ("right pleural effusion with blunting of the costophrenic angle", ["right_costophrenic_angle"],
     "pleural effusion"),
    ("small left effusion", ["left_costophrenic_angle"], "pleural effusion"),
    ("bilateral pleural effusions", ["right_costophrenic_angle", "left_costophrenic_angle"], "pleural effusion"),
    ("left-sided pleural effusion", ["left_costophrenic_angle"], "pleural effusion"),
    ("cardiomegaly", ["cardiac_silhouette"], "cardiomegaly"),
    ("moderate enlargement of the cardiac silhouette", ["cardiac_silhouette"], "cardiomegaly"),
    ("mild pulmonary edema", ["right_lung", "left_lung"], "edema"),
    ("bilateral perihilar edema", ["right_hilar_structures", "left_hilar_structures"], "edema"),
    ("patchy opacity in the left mid lung consistent with pneumonia", ["left_mid_lung_zone"], "pneumonia"),
    ("multifocal pneumonia in both upper lungs", ["right_upper_lung_zone", "left_upper_lung_zone"], "pneumonia"),
    ("pneumonia", ["right_lung", "left_lung"], "pneumonia"),
    ("retrocardiac opacity", ["left_lower_lung_zone"], "opacity"),
    ("lingular opacity", ["left_mid_lung_zone"], "opacity"),
    ("right upper and lower lobe opacities", ["right_upper_lung_zone", "right_lower_lung_zone"], "opacity"),
    ("right lower lobe consolidation and left upper lobe atelectasis",
     ["right_lower_lung_zone", "left_upper_lung_zone"], "atelectasis"),
    ("opacity at the base of the right lung", ["right_lower_lung_zone"], "opacity"),
    ("elevated right hemidiaphragm", ["right_hemidiaphragm"], "elevated"),
    ("right hilar fullness", ["right_hilar_structures"], "fullness"),
    ("calcified aortic knob", ["aortic_arch"], "calcification"),
    ("left clavicle fracture", ["left_clavicle"], "fracture"),
    ("nodule in the right upper lung zone", ["right_upper_lung_zone"], "nodule"),
    ("widening of the upper mediastinum", ["upper_mediastinum"], "widening"),
]


@pytest.mark.parametrize("phrase,locations,pathology", PHRASES, ids=[p[0] for p in PHRASES])
def test_parser_finds_location_and_pathology(phrase, locations, pathology):
    finding = parse_phrase(phrase)
    assert list(finding.locations) == locations
    assert finding.pathology == pathology


def test_parser_reads_the_patient_side_of_every_phantom_phrase():
    """Phantom phrases follow the radiological convention; their recorded side and zone must come back."""
    from bench.datasets.phantom import PhantomDataset

    rules = load_rules()
    samples = PhantomDataset(options={"n_test": "64", "n_train": "0"}).samples()
    regions_of_zone = {"upper": "upper", "mid": "mid", "lower": "lower", "apical": "apical"}
    checked = 0
    for sample in samples:
        finding = parse_phrase(sample.phrase)
        found = [rules.find(key) for key in finding.locations]
        side = sample.extra["side"]
        sides = {loc.side for loc in found}
        assert sides == ({R, L} if side == "bilateral" else {side}), sample.phrase
        category = sample.category.lower()
        assert finding.pathology == ("opacity" if category == "lung opacity" else category), sample.phrase
        if category == "pleural effusion":
            assert {loc.region for loc in found} == {"costophrenic"}
        elif category in ("consolidation", "lung opacity", "pneumonia", "pneumothorax") and \
                sample.extra["zone"] in regions_of_zone and "lateral" not in sample.phrase:
            assert {loc.region for loc in found} == {regions_of_zone[sample.extra["zone"]]}, sample.phrase
            checked += 1
    assert checked >= 10


def test_bad_phrases_fail_in_one_line():
    with pytest.raises(BenchError, match="empty phrase"):
        parse_phrase("  ,. ")
    with pytest.raises(BenchError, match="names no pathology"):
        parse_phrase("small right lower lobe")


def test_explicit_locations_by_key_name_or_list():
    assert explicit_locations("right_apical_zone") == ("right_apical_zone",)
    assert explicit_locations("Right Apical Zone") == ("right_apical_zone",)
    assert explicit_locations("<left_lung>+cardiac silhouette") == ("left_lung", "cardiac_silhouette")
    assert explicit_locations(["svc", "trachea"]) == ("svc", "trachea")
    with pytest.raises(BenchError, match="unknown anatomical location 'right elbow'"):
        explicit_locations("right elbow")


def test_rules_hold_27_distinct_locations_with_sides():
    rules = load_rules()
    assert len(rules.locations) == 27
    assert len(set(rules.keys)) == 27
    sided = [loc for loc in rules.locations if loc.side != "none"]
    assert {loc.key.replace("right_", "") for loc in sided if loc.side == R} == \
        {loc.key.replace("left_", "") for loc in sided if loc.side == L}
    assert len(sided) == 18


def test_prompt_is_location_then_pathology():
    assert build_prompt(["right_apical_zone"], "pneumothorax") == \
        ("right apical zone pneumothorax", ("right apical zone",))
    prompt, names = build_prompt(["right_lower_lung_zone", "left_lower_lung_zone"], "atelectasis")
    assert prompt == "right lower lung zone and left lower lung zone atelectasis"
    assert names == ("right lower lung zone", "left lower lung zone")


# ---------------------------------------------------------------- codebook

DIM = 16


def _tiny_clip(tmp_path: Path):
    """A character-level CLIP tokenizer and a one-layer CLIP text encoder with random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"!": 0}
    vocab.update({c: len(vocab) + i for i, c in enumerate(letters)})
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(letters)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), pad_token="!")
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=DIM, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=77,
                            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=0)
    return tokenizer, CLIPTextModel(config).eval()


def _tiny_bert(tmp_path: Path, words: list[str]):
    """A whole-word BERT tokenizer over `words` and a one-layer BERT with random weights."""
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=DIM, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=2, max_position_embeddings=32)
    return tokenizer, BertModel(config).eval()


def test_location_vocabulary_is_the_tokens_of_the_location_names(tmp_path):
    clip, _ = _tiny_clip(tmp_path)
    tokens = location_vocabulary(clip)
    # character-level BPE: every letter of the names, word-final letters as their own tokens
    assert tokens[:6] == ("r", "i", "g", "h", "t</w>", "l")
    assert set(tokens) == {t for loc in load_rules().locations for w in loc.name.split() for t in clip.tokenize(w)}
    bert, _ = _tiny_bert(tmp_path, ["right", "left", "lung", "lower", "atelectasis"])
    words = location_vocabulary(bert)
    # known words are their own tokens; unknown ones stand as themselves, once, in order of first use
    assert words[:5] == ("right", "lung", "upper", "zone", "mid")
    assert len(words) == len({w for loc in load_rules().locations for w in loc.name.split()}) == 24


def test_untuned_codebook_gives_exactly_the_plain_word_prompt(tmp_path):
    tokenizer, encoder = _tiny_bert(tmp_path, ["right", "left", "lung", "lower", "atelectasis"])
    prompt, _ = build_prompt(["right_lower_lung_zone", "left_lower_lung_zone"], "atelectasis")
    plain_ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        plain = encoder(torch.tensor([plain_ids])).last_hidden_state
    rows = encoder.get_input_embeddings().weight.shape[0]
    ids = inject_codebook(tokenizer, encoder, initial_codebook(tokenizer, encoder))
    # "zone" was [UNK]: now a token of its own, whose row starts at [UNK]'s; "and" stays [UNK]
    assert tokenizer.tokenize(prompt) == ["right", "lower", "lung", "zone", "[UNK]", "left", "lower", "lung", "zone",
                                          "atelectasis"]
    assert ids["right"] == tokenizer.convert_tokens_to_ids("right") and ids["zone"] >= rows
    coded_ids = tokenizer(prompt)["input_ids"]
    assert coded_ids != plain_ids
    with torch.no_grad():
        coded = encoder(torch.tensor([coded_ids])).last_hidden_state
    assert torch.equal(coded, plain)
    # a pathology word that contains a location word is not split by the added tokens
    assert tokenizer.tokenize("ozone") == ["[UNK]"]


def test_codebook_injection_changes_exactly_the_location_token_embeddings(tmp_path):
    tokenizer, encoder = _tiny_bert(tmp_path, ["right", "left", "lung", "lower", "and", "atelectasis"])
    before = encoder.get_input_embeddings().weight.detach().clone()
    tokens = location_vocabulary(tokenizer)
    codebook = random_codebook(tokens, DIM, seed=3)
    ids = inject_codebook(tokenizer, encoder, codebook)
    after = encoder.get_input_embeddings().weight.detach()
    known = {"right", "left", "lung", "lower"}
    assert {t for t, i in ids.items() if i < before.shape[0]} == known
    assert after.shape == (before.shape[0] + len(tokens) - len(known), DIM)
    untouched = [i for i in range(before.shape[0]) if i not in ids.values()]
    assert torch.equal(after[untouched], before[untouched])
    assert torch.equal(after[[ids[t] for t in codebook.tokens]], codebook.embeddings)

    prompt, names = build_prompt(["right_lower_lung_zone", "left_lower_lung_zone"], "atelectasis")
    input_ids = tokenizer(prompt)["input_ids"]
    positions = prompt_positions(tokenizer, names, "atelectasis", 77)
    assert positions["location"] == [1, 2, 3, 4, 6, 7, 8, 9]  # position 5 is the binding "and"
    assert positions["pathology"] == [10] and input_ids[10] == tokenizer.convert_tokens_to_ids("atelectasis")
    assert positions["both"] == list(range(1, 11))  # the whole phrase, "and" included
    assert prompt_positions(tokenizer, names, "atelectasis", 8)["location"] == [1, 2, 3, 4, 6]  # the end token at 7

    embed = encoder.get_input_embeddings()
    first = embed(torch.tensor([input_ids])).detach()[0]
    inject_codebook(tokenizer, encoder, random_codebook(tokens, DIM, seed=4))
    assert encoder.get_input_embeddings().weight.shape == after.shape  # injecting again adds nothing
    second = embed(torch.tensor([input_ids])).detach()[0]
    changed = [i for i in range(len(input_ids)) if not torch.equal(first[i], second[i])]
    assert changed == positions["location"]
    with pytest.raises(BenchError, match="not the 24 location tokens of this text encoder's tokenizer"):
        inject_codebook(tokenizer, encoder, random_codebook(tokens[:-1] + ("elbow",), DIM))
    with pytest.raises(BenchError, match="rows are 8-d, the text encoder's tokens are 16-d"):
        inject_codebook(tokenizer, encoder, random_codebook(tokens, 8))


def test_codebook_positions_with_a_subword_tokenizer(tmp_path):
    tokenizer, encoder = _tiny_clip(tmp_path)
    prompt, names = build_prompt(["right_lung"], "edema")
    ids = inject_codebook(tokenizer, encoder, initial_codebook(tokenizer, encoder))
    assert encoder.get_input_embeddings().weight.shape[0] == len(tokenizer)  # CLIP knows every piece: nothing added
    positions = prompt_positions(tokenizer, names, "edema", 77)
    input_ids = tokenizer(prompt)["input_ids"]
    assert positions["location"] == list(range(1, 10))  # r i g h t</w> l u n g</w>
    assert [input_ids[p] for p in positions["location"]] == [ids[t] for t in tokenizer.tokenize("right lung")]
    assert positions["pathology"] == list(range(10, 15))


def test_codebook_file_round_trip_and_one_line_errors(tmp_path):
    codebook = random_codebook(("right", "lung", "zone"), DIM, seed=1)
    path = tmp_path / "codebook.safetensors"
    save_codebook(codebook, path, {"seed": 1})
    loaded = load_codebook(path, DIM)
    assert loaded.tokens == codebook.tokens
    assert torch.equal(loaded.embeddings, codebook.embeddings)
    assert codebook_provenance(path) == {"seed": 1}

    with pytest.raises(BenchError) as missing:
        load_codebook(tmp_path / "absent.safetensors", 1024)
    message = str(missing.value)
    assert "absent.safetensors not found" in message and "R x 1024" in message and "\n" not in message
    assert "bench tune anatomy" in message
    with pytest.raises(BenchError, match="16-d, the text encoder's tokens are 1024-d"):
        load_codebook(path, 1024)
    from safetensors.torch import save_file

    save_file({"embeddings": torch.zeros(27, DIM)}, str(tmp_path / "old.safetensors"),
              metadata={"locations": json.dumps(list(load_rules().keys))})
    with pytest.raises(BenchError, match="not a location-token codebook \\(no 'tokens' metadata") as old:
        load_codebook(tmp_path / "old.safetensors", DIM)
    assert "\n" not in str(old.value)
    save_file({"embeddings": torch.zeros(2, DIM)}, str(tmp_path / "short.safetensors"),
              metadata={"tokens": json.dumps(["right", "lung", "zone"])})
    with pytest.raises(BenchError, match="do not hold one row per token \\(3\\)"):
        load_codebook(tmp_path / "short.safetensors", DIM)
    (tmp_path / "junk.safetensors").write_bytes(b"not a codebook")
    with pytest.raises(BenchError, match="not a location-token codebook"):
        load_codebook(tmp_path / "junk.safetensors", DIM)


def test_random_codebook_has_the_right_shape_and_seed():
    tokens = ("right", "lung")
    a, b, c = random_codebook(tokens, 1024, seed=0), random_codebook(tokens, 1024, seed=0), random_codebook(tokens, 1024, seed=1)
    assert a.embeddings.shape == (2, 1024) and a.tokens == tokens
    assert torch.equal(a.embeddings, b.embeddings)
    assert not torch.equal(a.embeddings, c.embeddings)
    assert 0.01 < float(a.embeddings.std()) < 0.03


# ---------------------------------------------------------------- anatomy_ldm end to end

def _run_anatomy(bench_cli, out: Path, *extra: str, method: str = "anatomy_ldm"):
    overrides = [x for item in [*TINY_MONAI, *extra] for x in ("--set", item)]
    return bench_cli("run", "--method", method, "--dataset", "phantom", "-O", "n_test=2", "-O", "n_train=0",
                     "--limit", "2", "--random-weights", "--out", out, *overrides)


def test_anatomy_ldm_with_bbm_runs_both_passes(bench_cli, tmp_path):
    from bench.core.heatmap import Heatmap

    # the tiny U-Net's 2x2 maps are smaller than BBM's SSIM window: one line, nothing left behind
    r = _run_anatomy(bench_cli, tmp_path / "small", method="anatomy_ldm+bbm")
    assert r.code != 0 and "SSIM" in r.err and "params.grid" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "small").exists()
    out = tmp_path / "bbm"
    r = _run_anatomy(bench_cli, out, "grid=8", "bbm_guidance_scale=4.0", "token_weighting=word",
                     method="anatomy_ldm+bbm")
    assert r.code == 0, r.err
    run = json.loads((out / "run.json").read_text())
    assert run["provenance"]["bbm"] is True
    assert run["config"]["method"]["params"]["bbm_guidance_scale"] == 4.0
    for path in (out / "heatmaps").glob("*.npz"):
        heatmap = Heatmap.load(path)
        assert np.isfinite(heatmap.values).all() and heatmap.values.max() == pytest.approx(1.0)
        # pass 1 inverts every one of the 10 steps (1 unconditional drive + 1 conditional read each),
        # pass 2 samples 10 steps with guidance (both halves): 20 + 20
        assert heatmap.meta["sample_evals"] == 40.0


def test_anatomy_ldm_random_weights_end_to_end(bench_cli, tmp_path):
    from bench.core.heatmap import Heatmap

    parsed, explicit = tmp_path / "parsed", tmp_path / "explicit"
    r = _run_anatomy(bench_cli, parsed)
    assert r.code == 0, r.err
    r = _run_anatomy(bench_cli, explicit, "location=right_apical_zone", "read_tokens=location")
    assert r.code == 0, r.err

    run = json.loads((parsed / "run.json").read_text())
    assert run["method"] == "anatomy_ldm" and run["n_samples"] == 2
    provenance = run["provenance"]
    assert provenance["backend"] == "anatomy_ldm" and provenance["codebook"] == "random (seeded)"
    assert len(provenance["locations"]) == 27
    prompts = {}
    for folder in (parsed, explicit):
        for path in sorted((folder / "heatmaps").glob("*.npz")):
            heatmap = Heatmap.load(path)
            assert heatmap.values.shape == (32, 32)
            assert np.isfinite(heatmap.values).all()
            prompts[(folder.name, path.stem)] = (heatmap.meta["prompt"], heatmap.meta["tokens"])
    # phantom-test-00000: "small right lower lobe atelectasis"; -00001: "enlarged cardiac silhouette"
    prompt, tokens = prompts[("parsed", "phantom-test-00000")]
    assert prompt == "right lower lung zone atelectasis"
    assert tokens[0] == 1 and len(tokens) > 1
    assert prompts[("parsed", "phantom-test-00001")][0] == "cardiac silhouette cardiomegaly"
    # read_tokens=location: the three tokens right</w> apical</w> zone</w>
    assert prompts[("explicit", "phantom-test-00000")] == ("right apical zone atelectasis", [1, 2, 3])
    assert prompts[("explicit", "phantom-test-00001")] == ("right apical zone cardiomegaly", [1, 2, 3])
    first = Heatmap.load(parsed / "heatmaps" / "phantom-test-00000.npz").values
    other = Heatmap.load(explicit / "heatmaps" / "phantom-test-00000.npz").values
    assert np.abs(first - other).max() > 1e-3


def test_anatomy_ldm_without_codebook_stops_in_one_line(bench_cli, tmp_path):
    r = bench_cli("run", "--method", "anatomy_ldm", "--dataset", "phantom", "-O", "n_test=2", "-O", "n_train=0",
                  "--limit", "1", "--weights", tmp_path, "--out", tmp_path / "run")
    assert r.code != 0
    lines = [line for line in r.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1
    assert f"location-token codebook {tmp_path / 'location_codebook.safetensors'} not found" in lines[0]
    assert not (tmp_path / "run" / "heatmaps").exists()


def test_anatomy_ldm_rejects_unknown_options(bench_cli, tmp_path):
    r = _run_anatomy(bench_cli, tmp_path / "a", "location=left_elbow")
    assert r.code != 0 and "unknown anatomical location 'left_elbow'" in r.err
    r = _run_anatomy(bench_cli, tmp_path / "b", "read_tokens=everything")
    assert r.code != 0 and "params.read_tokens = 'everything'" in r.err


def test_location_precedence_spec_then_sample_then_phrase():
    from bench.core.errors import SampleError
    from bench.core.samples import Sample
    from bench.methods import RunContext, backend_class
    from bench.methods.specs import apply_overrides, load_method_spec

    def method(*overrides):
        spec = apply_overrides(load_method_spec("anatomy_ldm"), list(overrides))
        return backend_class(spec["backend"])(spec, RunContext(random_weights=True))

    box = ((1.0, 1.0, 2.0, 2.0),)
    plain = Sample("a", "a.png", 8, 8, "Pneumothorax", "left apical pneumothorax", box)
    annotated = Sample("b", "b.png", 8, 8, "Pneumothorax", "left apical pneumothorax", box,
                       extra={"location": "left lung"})
    unreadable = Sample("c", "c.png", 8, 8, "Pneumothorax", "right upper lobe", box)
    parsed = method()
    assert parsed.finding(plain) == (("left_apical_zone",), "pneumothorax")
    assert parsed.finding(annotated) == (("left_lung",), "pneumothorax")
    with pytest.raises(SampleError, match="sample c: phrase 'right upper lobe' names no pathology"):
        parsed.finding(unreadable)
    forced = method("location=right_costophrenic_angle+right_lung")
    assert forced.finding(annotated) == (("right_costophrenic_angle", "right_lung"), "pneumothorax")
    words = method("location_tokens=words")
    # the codebook changes the location words' embeddings, not the prompt
    assert words.prompt_for(plain) == parsed.prompt_for(plain) == "left apical zone pneumothorax"
