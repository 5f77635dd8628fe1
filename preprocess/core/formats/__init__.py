"""One module per file format: its name, schema, reader (with its checks) and writer."""
