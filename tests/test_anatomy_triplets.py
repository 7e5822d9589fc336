"""Training triplets: sentence selection, locations, the report-level bilateral merge, provenance."""

from __future__ import annotations

import pytest

from bench.core.errors import BenchError
from bench.core.samples import Sample
from bench.datasets.anatomy import build_prompt
from bench.datasets.phantom import PhantomDataset
from bench.methods.ldm.anatomy.triplets import (
    RadGraphParser,
    Report,
    RuleParser,
    curate,
    make_parser,
    read_reports,
    reports_from_samples,
    sentences,
)


def _report(text: str, category: str = "pleural effusion", sid: str = "img") -> Report:
    return Report(Sample(sid, f"/x/{sid}.png", 10, 10, category, "", ()), category, text)


def test_sentences_split_at_stops_not_decimals():
    assert sentences("Heart is 1.5 cm. No effusion; small right effusion\nOK") == [
        "Heart is 1.5 cm", "No effusion", "small right effusion", "OK"]


def test_kept_sentences_name_the_label_without_negation_and_with_a_location():
    text = ("No pneumothorax. Small right pleural effusion. Pleural effusion is unchanged. "
            "Left effusion has resolved. The heart is normal.")
    triplets, counts = curate([_report(text)])
    assert [(t.locations, t.pathology) for t in triplets] == [(("right_costophrenic_angle",), "pleural effusion")]
    assert counts["off_label"] == 2 and counts["negated_or_resolved"] == 1 and counts["no_location"] == 1
    assert build_prompt(triplets[0].locations, triplets[0].pathology) == (
        "right costophrenic angle pleural effusion", ("right costophrenic angle",))


def test_mirror_locations_of_one_report_merge_into_one_bilateral_prompt():
    text = "Small left effusion. Moderate right pleural effusion. Right effusion again."
    triplets, counts = curate([_report(text)])
    assert [t.locations for t in triplets] == [("right_costophrenic_angle", "left_costophrenic_angle")]
    assert counts["merged_bilateral"] == 1 and counts["duplicates"] == 1
    # separate reports never merge
    triplets, _ = curate([_report("Small left effusion.", sid="a"), _report("Right effusion.", sid="b")])
    assert [t.locations for t in triplets] == [("left_costophrenic_angle",), ("right_costophrenic_angle",)]


def test_synonyms_count_for_their_label_only():
    triplets, _ = curate([_report("Patchy opacity in the right lower lobe.", "pneumonia")])
    assert triplets[0].locations == ("right_lower_lung_zone",) and triplets[0].pathology == "pneumonia"
    triplets, counts = curate([_report("Patchy opacity in the right lower lobe.", "pneumothorax")])
    assert triplets == [] and counts["off_label"] == 1
    with pytest.raises(BenchError, match="label 'fracture'"):
        curate([_report("Rib fracture on the left.", "fracture")])


def test_phantom_train_phrases_give_triplets_on_their_side():
    ds = PhantomDataset(None, {"n_train": "48", "n_test": "0"})
    triplets, counts = curate(reports_from_samples(ds.samples()))
    # only "perihilar haziness consistent with edema" names no side: dropped, as the paper drops them
    unsided = [s for s in ds.samples() if "perihilar haziness" in s.phrase]
    assert len(unsided) == 4 and counts["no_location"] == 4 and counts["triplets"] == 44
    for t in triplets:
        side = t.sample.extra["side"]
        if side in ("right", "left"):
            assert all(k.startswith(side) for k in t.locations), (t.sentence, t.locations)


class _FakeRadGraph:
    def __call__(self, texts):
        assert texts == ["Small effusion at the left base"]
        return {"0": {"entities": {"1": {"tokens": "effusion", "label": "Observation::definitely present"},
                                   "2": {"tokens": "left", "label": "Anatomy::definitely present"},
                                   "3": {"tokens": "base", "label": "Anatomy::definitely present"}}}}


def test_radgraph_entities_are_read_into_locations_and_named_in_provenance():
    parser = RadGraphParser(model=_FakeRadGraph())
    assert parser.name.startswith("radgraph-xl")
    triplets, _ = curate([_report("Small effusion at the left base.")], parser=parser)
    assert triplets[0].locations == ("left_lower_lung_zone",)


def test_parser_choice(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "radgraph", None)  # not installed
    assert isinstance(make_parser("auto"), RuleParser)
    with pytest.raises(BenchError, match="RadGraph-XL is not available"):
        make_parser("radgraph")


def test_reports_table_and_its_errors(tmp_path):
    csv = tmp_path / "reports.csv"
    csv.write_text('image_path,category,report\nimgs/a.jpg,Pneumothorax,"Small left apical pneumothorax."\n')
    (report,) = read_reports(csv)
    assert report.sample.image_path == str(tmp_path / "imgs" / "a.jpg") and report.category == "pneumothorax"
    csv.write_text("image_path,report\na.jpg,x\n")
    with pytest.raises(BenchError, match="missing column 'category'"):
        read_reports(csv)
