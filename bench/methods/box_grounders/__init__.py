"""Published grounders whose output is boxes, not heatmaps (MAIRA-2's phrase grounding).

A box grounder returns one `bench.core.predictions.BoxPrediction` per sample: its boxes in original
pixels, best first, or the reason it gave none (an unparsable generation is a recorded failure,
never an empty box list).
"""
