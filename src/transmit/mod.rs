//! Delivery to the ingestion endpoint: from "a batch of envelopes" to "the ingestion service
//! said yes". Knows nothing about OpenTelemetry.
//!
//! - [`encode`]: serialize each envelope once; build gzip JSON-array bodies within the
//!   service's limits from any subset of the items.
//! - [`outcome`]: what an answer of the service means (a pure table).
//! - [`retry`]: the public [`RetryPolicy`] and its backoff schedule.
//! - [`client`]: the [`Transmitter`](client::Transmitter), one worker thread with its own
//!   runtime that posts, retries, follows redirects and answers over runtime-agnostic channels.
//! - [`storage`]: offline storage of what could not be delivered, sent again later.

pub(crate) mod client;
pub(crate) mod encode;
pub(crate) mod outcome;
pub(crate) mod retry;
pub(crate) mod storage;

pub use retry::RetryPolicy;

pub(crate) use client::{TransmitConfig, Transmitter};
pub(crate) use encode::{encode, encode_counted, EncodedItems};
