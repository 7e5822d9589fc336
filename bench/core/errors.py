"""The one exception type for user-facing errors: the CLI prints its message as a single line."""


class BenchError(Exception):
    """Bad input or configuration; the message names the thing at fault."""


class SampleError(BenchError):
    """A problem confined to one sample; `--skip-bad` records it and goes on."""

    def __init__(self, sample_id: str, reason: str) -> None:
        super().__init__(f"sample {sample_id}: {reason}")
        self.sample_id = sample_id
        self.reason = reason
