"""The Beam parts of the jobs: `runner` (runner selection and options), `inference` (the
ModelHandler of extract), `shard_sink` (shards, resume, summaries), `completeness` (every input one
row), `query_ranker` and `distributed_query` (query blocks on a runner)."""
