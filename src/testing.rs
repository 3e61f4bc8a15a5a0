//! A local Track-API ingestion server (in progress).
