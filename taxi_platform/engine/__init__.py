"""The ingest engine: a month's file read once, its trip ids computed in a vectorised engine, its
rows written to the warehouse once.

One job per module:

    csv_blocks.py   the reader of a CSV.gz release: line-aligned blocks of the decompressed file,
                    header checked, BOM, CRLF and blank lines settled, file line numbers kept
    trip_ids.py     the normaliser and the trip id: each identity field parsed and rendered to its
                    canonical text, the MD5 taken (DuckDB, vectorised); values it cannot read are
                    refused, naming file line and column
    duplicates.py   which ids repeat: every id (as two 64-bit words) grouped in DuckDB, which
                    spills to disk past its memory limit (the file's size does not set the memory
                    used); the PostgreSQL writer keeps the first occurrence in file order
    copy_stream.py  the PostgreSQL writer's input: the file's own lines, each prefixed with its id,
                    produced by a background thread while COPY consumes them (a pipeline: the
                    write starts while the file is still being read)
"""
