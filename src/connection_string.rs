//! Connection string (in progress).
