"""One module per `kmlm-preprocess` subcommand, named after it."""
