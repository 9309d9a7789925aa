"""The eercf jobs: Beam extraction and the batch jobs around it, each with a run(argv) entry."""
