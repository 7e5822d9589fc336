"""`anatomy_ldm` (Vilouras et al. 2025) on the diffusion engine: its location-token codebook
(`codebook`), its backend (`method`), and `bench tune anatomy`, which trains the codebook
(`triplets`, `tune`, `tune_spec`; the built-in tuning specs are in `../tuning/`)."""
