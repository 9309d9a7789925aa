"""Videos: `decode` (frame sampling, the PyAV and decord backends), `isolation` (the decoder
process pool), `error_causes` (why a video failed), `previews` (thumbnail JPEGs) and `writer`
(test and synthetic video files). Light on purpose: decoder processes import only this."""
