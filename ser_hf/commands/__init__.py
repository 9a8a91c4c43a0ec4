"""`ser-hf` subcommands, one module each with `main(argv) -> int`."""
