"""Files and their formats: `paths` (local path or URL), `atomic` (every atomic write),
`text_formats` (line-based inputs: queries, ground truth, ranked lists, JSONL), `inputs` (video
references and manifests), `ids`, `shards` (Parquet feature shards), `output_lock` and
`output_check` (one writer per output, writable before work)."""
