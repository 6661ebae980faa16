"""The command line (dcnviz.commands): each subcommand's JSON contract, summaries and clean errors."""
