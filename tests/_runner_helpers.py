"""Module-level helpers for runner tests (Dask worker processes import them by name)."""
from __future__ import annotations

from pipelines.beam.shard_sink import WriteShardsFn


class DroppingWriteShardsFn(WriteShardsFn):
    """A WriteShardsFn that loses the row of video `drop`, as a faulty runner would."""

    def __init__(self, *args, drop: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.drop = drop

    def process(self, element):
        if element[2]["video_id"] == self.drop:
            return
        yield from super().process(element)
