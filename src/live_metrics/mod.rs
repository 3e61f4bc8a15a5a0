//! Live Metrics (QuickPulse): the portal's live stream, on the `2024-04-01-preview` protocol.

mod collect;
mod document;
mod filter;
mod protocol;
mod state;
