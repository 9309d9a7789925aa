"""One thin module per `eercf` subcommand: `build_parser()` and `run(argv)`: parse flags, call
the core (and the Beam parts), print."""
