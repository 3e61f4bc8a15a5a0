//! Conversion from OpenTelemetry data to envelopes (in progress).
