//! Delivery to the ingestion endpoint (in progress).
