"""The EERCF model: the open_clip towers with the temporal head (`network`, `temporal`), model
specs and registered configs (`spec`, `configs/`), checkpoints (`checkpoint`) and the per-video
feature container (`features`). Empty on purpose: importing a submodule never loads torch for
another."""
