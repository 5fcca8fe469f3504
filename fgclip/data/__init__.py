"""Data: the record schema, readers (JSONL, FineHARD, webdataset), datasets, collation, synthetic scenes."""
